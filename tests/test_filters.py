"""Unit tests for every filter and filter factory in ``harness.wire.filters``.

Most tests build envelopes and a ``FilterContext`` with a seeded generator by
hand and call ``.filter`` directly; HoldFilter and DuplicateFilter are also
exercised through a real Cluster where their behaviour depends on the network.
"""
from __future__ import annotations

import collections

from harness import Cluster
from harness.wire.filters import (ConditionalFilter, CountFilter, DelayFilter, DropPacketFilter, DuplicateFilter,
                             HoldFilter, IsolationFilter, IsolationFilterFactory, MessageTypeFilter,
                             PartitionFilter, PartitionFilterFactory, PredicateFilter, ReorderFilter)
from helpers import FakeNetwork, Recorder, make_batch, make_ctx, make_env, others


# --- DropPacketFilter ------------------------------------------------------------------------

def test_drop_rate_zero_keeps_everything_in_order():
    """rate=0 never drops: the same envelopes come out, in the same order."""
    batch = make_batch(200)
    out = DropPacketFilter(0).filter(list(batch), make_ctx(1))
    assert [e.seq for e in out] == [e.seq for e in batch]


def test_drop_rate_one_drops_everything():
    """rate=1 drops every message."""
    assert DropPacketFilter(1).filter(make_batch(200), make_ctx(1)) == []


def test_drop_rate_half_drops_some_but_not_all():
    """rate=0.5 over 1000 messages drops a plausible share (neither none nor all) and keeps order."""
    batch = make_batch(1000)
    out = DropPacketFilter(0.5).filter(list(batch), make_ctx(3))
    assert 350 < len(out) < 650
    seqs = [e.seq for e in out]
    assert seqs == sorted(seqs)
    assert set(seqs) <= {e.seq for e in batch}


def test_drop_is_deterministic_for_a_seed_and_varies_across_seeds():
    """The same seed drops exactly the same messages; a different seed drops a different set."""
    batch = make_batch(300)
    a = [e.seq for e in DropPacketFilter(0.5).filter(list(batch), make_ctx(11))]
    b = [e.seq for e in DropPacketFilter(0.5).filter(list(batch), make_ctx(11))]
    c = [e.seq for e in DropPacketFilter(0.5).filter(list(batch), make_ctx(12))]
    assert a == b
    assert a != c


# --- DelayFilter -----------------------------------------------------------------------------

def test_delay_adds_to_every_envelope_and_keeps_all():
    """DelayFilter keeps every message and adds its seconds to each envelope's delay (cumulatively)."""
    batch = make_batch(5)
    batch[0].delay = 0.5
    out = DelayFilter(0.25).filter(list(batch), make_ctx())
    assert [e.seq for e in out] == [e.seq for e in batch]
    assert [e.delay for e in out] == [0.75, 0.25, 0.25, 0.25, 0.25]


def test_delay_filter_delays_delivery_in_a_cluster():
    """Every message a node sends through DelayFilter(0.3) arrives at least 0.3 s after it was sent."""
    with Cluster(nodes=3, seed=5) as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        c.add_send_filter(leader, DelayFilter(0.3))
        since = c.now  # messages sent before this were already on their way undelayed
        recs = {n: Recorder(lambda e: e.src == leader and e.sent_at >= since) for n in others(c, leader)}
        for n, r in recs.items():
            c.add_recv_filter(n, r)
        c.run_for(2)
        lags = [t - e.sent_at for r in recs.values() for t, e in r.seen]
        assert lags, "the leader sent nothing in 2 s"
        assert min(lags) >= 0.3


# --- PartitionFilter -------------------------------------------------------------------------

def test_partition_send_side_filters_by_destination():
    """On a send chain the peer is the destination: messages to the cut nodes are dropped."""
    batch = [make_env("n1", "n2"), make_env("n1", "n3"), make_env("n1", "n4")]
    out = PartitionFilter(["n2", "n4"]).filter(list(batch), make_ctx(owner="n1", direction="send"))
    assert [e.dst for e in out] == ["n3"]


def test_partition_recv_side_filters_by_source():
    """On a receive chain the peer is the source, so the same filter drops by sender instead."""
    batch = [make_env("n2", "n1"), make_env("n3", "n1"), make_env("n4", "n1")]
    out = PartitionFilter(["n2", "n4"]).filter(list(batch), make_ctx(owner="n1", direction="recv"))
    assert [e.src for e in out] == ["n3"]


def test_partition_recv_side_ignores_the_destination():
    """On a receive chain only the source matters: a filter naming the owner itself drops nothing
    that comes from an unlisted node."""
    ctx = make_ctx(owner="n2", direction="recv")
    out = PartitionFilter(["n2"]).filter([make_env("n3", "n2")], ctx)
    assert len(out) == 1


def test_partition_filter_cuts_only_listed_peers():
    """``cuts`` reports a connection-level fault exactly for the partitioned peers."""
    f = PartitionFilter(["n2"])
    assert f.cuts("n1", "n2")
    assert not f.cuts("n1", "n3")


def test_context_peer_depends_on_direction():
    """FilterContext.peer is the destination on send chains and the source on receive chains."""
    env = make_env("a", "b")
    assert make_ctx(owner="a", direction="send").peer(env) == "b"
    assert make_ctx(owner="b", direction="recv").peer(env) == "a"


# --- MessageTypeFilter -----------------------------------------------------------------------

def test_message_type_filter_drops_only_listed_types():
    """MessageTypeFilter drops the listed pysyncobj types and keeps every other one."""
    kinds = ["request_vote", "response_vote", "append_entries", "next_node_idx", "snapshot"]
    batch = [make_env(kind=k) for k in kinds]
    out = MessageTypeFilter(["request_vote", "next_node_idx"]).filter(list(batch), make_ctx())
    assert [e.kind for e in out] == ["response_vote", "append_entries", "snapshot"]


def test_message_type_filter_snapshot_is_distinct_from_append_entries():
    """'snapshot' drops snapshot chunks but not ordinary append_entries, and vice versa."""
    batch = [make_env(kind="append_entries"), make_env(kind="snapshot")]
    assert [e.kind for e in MessageTypeFilter(["snapshot"]).filter(list(batch), make_ctx())] == ["append_entries"]
    assert [e.kind for e in MessageTypeFilter("append_entries").filter(list(batch), make_ctx())] == ["snapshot"]


def test_envelope_kind_classifies_snapshot_messages():
    """The network labels an append_entries carrying ``serialized`` as 'snapshot'."""
    from harness.wire.messages import message_type
    assert message_type({"type": "append_entries", "term": 1, "entries": []}) == "append_entries"
    assert message_type({"type": "append_entries", "term": 1, "serialized": None}) == "snapshot"
    assert message_type({"type": "request_vote"}) == "request_vote"


# --- ConditionalFilter -----------------------------------------------------------------------

def test_conditional_filter_switches_inner_on_and_off():
    """Enabled, the inner filter applies (and ``cuts`` follows it); disabled, everything passes."""
    f = ConditionalFilter(DropPacketFilter(1.0), enabled=True)
    assert f.filter(make_batch(10), make_ctx()) == []
    f.switch(False)
    assert len(f.filter(make_batch(10), make_ctx())) == 10
    f.switch(True)
    assert f.filter(make_batch(10), make_ctx()) == []

    p = ConditionalFilter(PartitionFilter(["n2"]), enabled=False)
    assert not p.cuts("n1", "n2")
    p.switch(True)
    assert p.cuts("n1", "n2")


def test_conditional_filter_inherits_fifo_compatibility():
    """Wrapping a duplicate/reorder filter does not sneak it past the fifo check."""
    assert ConditionalFilter(DropPacketFilter(0.1)).fifo_ok
    assert not ConditionalFilter(DuplicateFilter()).fifo_ok
    assert not ConditionalFilter(ReorderFilter(0.1)).fifo_ok


# --- CountFilter -----------------------------------------------------------------------------

def test_count_filter_passes_n_then_blocks_across_batches():
    """CountFilter(3) lets exactly the first three messages through, counted over several batches."""
    f = CountFilter(3)
    first = make_batch(2)
    second = make_batch(3)
    out1 = f.filter(list(first), make_ctx())
    out2 = f.filter(list(second), make_ctx())
    out3 = f.filter(make_batch(4), make_ctx())
    assert [e.seq for e in out1] == [e.seq for e in first]
    assert [e.seq for e in out2] == [second[0].seq]
    assert out3 == []


def test_count_filter_zero_blocks_everything():
    """CountFilter(0) blocks from the first message."""
    assert CountFilter(0).filter(make_batch(5), make_ctx()) == []


# --- DuplicateFilter -------------------------------------------------------------------------

def test_duplicate_rate_one_doubles_every_message():
    """Each message is followed by a copy with the same payload and a fresh seq."""
    batch = make_batch(4)
    out = DuplicateFilter(1.0).filter(list(batch), make_ctx(network=FakeNetwork()))
    assert len(out) == 8
    for i, e in enumerate(batch):
        original, copy = out[2 * i], out[2 * i + 1]
        assert original is e
        assert copy is not e and copy.seq != e.seq
        assert (copy.payload, copy.src, copy.dst, copy.kind) == (e.payload, e.src, e.dst, e.kind)


def test_duplicate_rate_zero_copies_nothing():
    """rate=0 returns the batch unchanged."""
    batch = make_batch(4)
    out = DuplicateFilter(0.0).filter(list(batch), make_ctx(network=FakeNetwork()))
    assert [e.seq for e in out] == [e.seq for e in batch]


def test_duplicate_filter_through_unreliable_cluster():
    """On network='unreliable' a DuplicateFilter on the leader makes followers receive copies."""
    with Cluster(nodes=3, seed=2, network="unreliable") as c:
        leader = c.wait_leader()
        rec = Recorder(lambda e: e.src == leader)
        follower = others(c, leader)[0]
        c.add_recv_filter(follower, rec)
        c.add_send_filter(leader, DuplicateFilter(1.0))
        since = c.now
        c.run_for(1)
        # Copies travel with their own latency (<= 0.02 s): look at messages sent in a window
        # whose copies have certainly arrived.
        counts = collections.Counter((e.sent_at, e.payload) for e in rec.envelopes
                                     if since <= e.sent_at <= c.now - 0.1)
        assert len(counts) >= 4
        assert set(counts.values()) == {2}  # every message arrived exactly twice
        assert not c.node_errors


# --- ReorderFilter ---------------------------------------------------------------------------

def test_reorder_adds_bounded_random_delay_deterministically():
    """Delays are in [0, max_delay], not all equal, and the same seed gives the same delays."""
    a = ReorderFilter(0.5).filter(make_batch(50), make_ctx(4))
    b = ReorderFilter(0.5).filter(make_batch(50), make_ctx(4))
    delays = [e.delay for e in a]
    assert all(0.0 <= d <= 0.5 for d in delays)
    assert len(set(delays)) > 1
    assert delays == [e.delay for e in b]
    assert len(a) == 50


# --- HoldFilter ------------------------------------------------------------------------------

def test_hold_filter_unit_holds_matching_and_releases_in_order():
    """Matching envelopes stay inside until release(), which hands them to the network in order."""
    net = FakeNetwork()
    f = HoldFilter(types=["append_entries"])
    f.bind(net.wiring())  # what installing it on a node does
    batch = [make_env(kind="append_entries"), make_env(kind="request_vote"), make_env(kind="append_entries")]
    out = f.filter(list(batch), make_ctx(network=net, model="unreliable"))
    assert [e.kind for e in out] == ["request_vote"]
    assert [e.seq for e in f.held] == [batch[0].seq, batch[2].seq]
    assert f.release() == 2
    assert [e.seq for e in net.injected] == [batch[0].seq, batch[2].seq]
    assert f.held == () and f.release() == 0


def test_hold_filter_fifo_blocks_the_link_behind_a_held_message():
    """In fifo a held message stalls its link: later messages on it are held too, other links pass."""
    f = HoldFilter(types=["snapshot"])
    ctx = make_ctx(network=FakeNetwork(), model="fifo")
    first = [make_env("n1", "n2", "snapshot"), make_env("n1", "n2", "append_entries"),
             make_env("n1", "n3", "append_entries")]
    out = f.filter(list(first), ctx)
    assert [(e.dst, e.kind) for e in out] == [("n3", "append_entries")]
    assert [e.kind for e in f.held] == ["snapshot", "append_entries"]


def test_hold_filter_predicate():
    """A predicate narrows what is held."""
    f = HoldFilter(predicate=lambda e: e.dst == "n3")
    out = f.filter([make_env("n1", "n2"), make_env("n1", "n3")], make_ctx(network=FakeNetwork()))
    assert [e.dst for e in out] == ["n2"] and [e.dst for e in f.held] == ["n3"]


def test_hold_then_release_delivers_in_order_through_cluster():
    """Held append_entries from the leader reach nobody until release; then all arrive, in seq order."""
    with Cluster(nodes=3, seed=3) as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        follower = others(c, leader)[0]
        hold = HoldFilter(types=["append_entries"], predicate=lambda e: e.dst == follower)
        c.add_send_filter(leader, hold)
        rec = Recorder(lambda e: e.src == leader)
        c.add_recv_filter(follower, rec)
        c.put("k", "v")
        c.run_for(0.5)
        held = [e.seq for e in hold.held]
        assert len(held) >= 2
        delivered_before = {e.seq for e in rec.envelopes}
        assert not delivered_before & set(held)
        count = hold.release()
        assert count == len(held)
        c.run_for(0.1)
        # Release hands the messages straight to delivery; check the delivery trace instead.
        delivered = [e.seq for _, e in c.recent_messages if e.src == leader and e.dst == follower]
        released = [s for s in delivered if s in set(held)]
        assert released == held
        assert not c.node_errors


# --- PredicateFilter -------------------------------------------------------------------------

def test_predicate_filter_keeps_exactly_what_the_predicate_accepts():
    """PredicateFilter keeps messages for which keep(env) is true and drops the others."""
    batch = [make_env(kind="append_entries"), make_env(kind="request_vote"), make_env(kind="append_entries")]
    out = PredicateFilter(lambda e: e.kind == "append_entries").filter(list(batch), make_ctx())
    assert [e.seq for e in out] == [batch[0].seq, batch[2].seq]


def test_predicate_filter_can_read_the_decoded_message():
    """Predicates may look inside the message (envelope.message / .term)."""
    batch = [make_env(term=1), make_env(term=5)]
    out = PredicateFilter(lambda e: e.term >= 5).filter(list(batch), make_ctx())
    assert [e.term for e in out] == [5]


# --- IsolationFilter -------------------------------------------------------------------------

def test_isolation_filter_drops_all_and_cuts_every_peer():
    """IsolationFilter drops every message both ways and cuts even peers it never heard of."""
    f = IsolationFilter()
    assert f.filter(make_batch(5), make_ctx(direction="send")) == []
    assert f.filter(make_batch(5, src="n2", dst="n1"), make_ctx(direction="recv")) == []
    assert f.cuts("n1", "n2") and f.cuts("n1", "n99")


# --- factories -------------------------------------------------------------------------------

def test_partition_factory_generates_for_a_b_and_neither():
    """Group a nodes cut group b, group b nodes cut group a, nodes in neither get no filter."""
    factory = PartitionFilterFactory(["n1"], ["n2", "n3"])
    nodes = ["n1", "n2", "n3", "n4"]
    (fa,) = factory.generate("n1", nodes)
    (fb,) = factory.generate("n2", nodes)
    assert isinstance(fa, PartitionFilter) and fa.nodes == frozenset({"n2", "n3"})
    assert isinstance(fb, PartitionFilter) and fb.nodes == frozenset({"n1"})
    assert factory.generate("n4", nodes) == []
    assert fa.cuts("n1", "n2") and not fa.cuts("n1", "n4")


def test_isolation_factory_generates_for_node_and_others():
    """The isolated node gets an IsolationFilter; every other node gets a partition from it."""
    factory = IsolationFilterFactory("n2")
    nodes = ["n1", "n2", "n3"]
    (own,) = factory.generate("n2", nodes)
    assert isinstance(own, IsolationFilter)
    for other in ("n1", "n3", "n9"):  # n9: a node added later
        (f,) = factory.generate(other, nodes)
        assert isinstance(f, PartitionFilter) and f.nodes == frozenset({"n2"})


def test_partition_factory_in_cluster_leaves_bystanders_connected():
    """A factory partition {n1} | {n2} still lets the bystander n3 talk to both sides."""
    from harness.sim.network import SimNode
    with Cluster(nodes=3, seed=1) as c:
        c.wait_leader()
        c.run_for(0.5)
        c.add_send_filter_factory(PartitionFilterFactory(["n1"], ["n2"]))
        c.run_for(1)
        connected = lambda a, b: c.node(a).isNodeConnected(SimNode(b))
        assert not connected("n1", "n2") and not connected("n2", "n1")
        assert connected("n3", "n1") and connected("n3", "n2")
        assert connected("n1", "n3") and connected("n2", "n3")
