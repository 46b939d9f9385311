"""The two channel models (``fifo`` and ``unreliable``) observed through a real Cluster."""
from __future__ import annotations

import collections

import pytest

from harness import Cluster
from harness.wire.filters import (ConditionalFilter, CountFilter, DelayFilter, DropPacketFilter, DuplicateFilter,
                             HoldFilter, PartitionFilter, ReorderFilter)
from harness.sim.network import SimNode
from helpers import Recorder, others, per_link_inversions, record_all_recv


def _connected(c, a, b) -> bool:
    """What node ``a``'s pysyncobj believes about its connection to ``b``."""
    return c.node(a).isNodeConnected(SimNode(b))


def _all_pairs_connected(c) -> bool:
    return all(_connected(c, a, b) for a in c.up_ids() for b in c.up_ids() if a != b)


def _write_burst(c, n: int, prefix: str = "k") -> None:
    for i in range(n):
        c.put(f"{prefix}{i}", i)
        c.run_for(0.01)


# --- fifo -------------------------------------------------------------------------------------

def test_fifo_keeps_per_link_order_despite_latency_spread():
    """With a wide latency range, fifo still delivers every (src, dst) link's messages in send order."""
    with Cluster(nodes=3, seed=1, latency=(0.001, 0.2)) as c:
        recs = record_all_recv(c)
        c.wait_leader()
        _write_burst(c, 30)
        c.run_for(2)
        delivered = [e for r in recs.values() for e in r.envelopes]
        assert len(delivered) > 50
        assert per_link_inversions(delivered) == 0


def test_unreliable_latency_spread_alone_reorders():
    """Contrast for the test above: the same setup on 'unreliable' does deliver some links out of order."""
    with Cluster(nodes=3, seed=1, network="unreliable", latency=(0.001, 0.2)) as c:
        recs = record_all_recv(c)
        c.wait_leader()
        _write_burst(c, 30)
        c.run_for(2)
        delivered = [e for r in recs.values() for e in r.envelopes]
        assert per_link_inversions(delivered) > 0


def test_fifo_order_kept_with_delay_filter_on_receive_side():
    """A receive-side DelayFilter must not let later messages overtake earlier ones on a fifo link."""
    with Cluster(nodes=3, seed=4, latency=(0.001, 0.1)) as c:
        leader = c.wait_leader()
        follower = others(c, leader)[0]
        c.add_recv_filter(follower, DelayFilter(0.05))
        c.run_for(0.3)
        since = c.now
        _write_burst(c, 20)
        c.run_for(1)
        # recent_messages is the delivery order (after every recv-side filter).
        delivered = [e for _, e in c.recent_messages if e.dst == follower and e.sent_at >= since]
        assert len(delivered) >= 5
        assert per_link_inversions(delivered) == 0


def test_fifo_cut_fires_disconnect_and_heal_reconnects():
    """A partition fires pysyncobj's disconnected callback on both ends at once; after heal the
    connected callback fires again once reconnect_delay has passed, not before."""
    with Cluster(nodes=3, seed=1, reconnect_delay=0.2) as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        assert _all_pairs_connected(c)
        rest = others(c, leader)
        c.partition([leader], rest)
        for f in rest:
            assert not _connected(c, leader, f) and not _connected(c, f, leader)
        assert _connected(c, rest[0], rest[1]) and _connected(c, rest[1], rest[0])
        c.run_for(1)
        for f in rest:
            assert not _connected(c, leader, f) and not _connected(c, f, leader)
        c.heal()
        c.run_for(0.1)  # less than reconnect_delay
        assert not _connected(c, leader, rest[0])
        c.run_for(0.2)
        assert _all_pairs_connected(c)


def test_fifo_loses_in_flight_messages_on_a_cut():
    """Messages on the wire when a fifo link is cut are never delivered, even if the link comes back
    before they would have arrived (a new TCP connection does not carry the old stream's bytes)."""
    with Cluster(nodes=3, seed=1) as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        follower = others(c, leader)[0]
        sent = Recorder(lambda e: e.dst == follower)
        c.add_send_filter(leader, sent)
        c.add_send_filter(leader, DelayFilter(1.0))
        c.run_for(0.3)
        in_flight = {e.seq for e in sent.envelopes}
        assert in_flight
        c.partition([leader], [follower])
        c.heal()  # the link is back after reconnect_delay (0.2 s), well before the 1 s delay ends
        got = Recorder(lambda e: e.src == leader)
        c.add_recv_filter(follower, got)
        c.run_for(3)
        delivered = {e.seq for e in got.envelopes}
        assert delivered, "nothing at all reached the follower after heal"
        assert not in_flight & delivered


def test_unreliable_delivers_in_flight_messages_across_a_partition():
    """Contrast: 'unreliable' connections never drop, so messages already sent still arrive."""
    with Cluster(nodes=3, seed=1, network="unreliable") as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        follower = others(c, leader)[0]
        sent = Recorder(lambda e: e.dst == follower)
        c.add_send_filter(leader, sent)
        c.add_send_filter(leader, DelayFilter(1.0))
        c.run_for(0.3)
        in_flight = {e.seq for e in sent.envelopes}
        c.partition([leader], [follower])
        c.heal()
        got = Recorder(lambda e: e.src == leader)
        c.add_recv_filter(follower, got)
        c.run_for(3)
        assert in_flight and in_flight <= {e.seq for e in got.envelopes}


def test_fifo_dropped_message_resets_the_connection():
    """In fifo a filter that drops one message breaks that TCP connection: both ends see a disconnect."""
    with Cluster(nodes=3, seed=2, reconnect_delay=0.5) as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        follower = others(c, leader)[0]
        c.add_recv_filter(follower, CountFilter(0))  # drop everything the follower receives
        c.run_until(lambda: not _connected(c, leader, follower), 1)
        assert not _connected(c, leader, follower) and not _connected(c, follower, leader)
        c.clear_filters(follower)
        c.run_for(1)
        assert _connected(c, leader, follower) and _connected(c, follower, leader)


def test_unreliable_drop_keeps_connections():
    """In 'unreliable' a dropped message is just lost: nobody is told about a disconnect."""
    with Cluster(nodes=3, seed=2, network="unreliable") as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        follower = others(c, leader)[0]
        c.add_recv_filter(follower, DropPacketFilter(1.0))
        c.run_for(1)
        assert _all_pairs_connected(c)
        assert c.state(leader).commit_index >= 1


@pytest.mark.parametrize("make", [lambda: DuplicateFilter(0.5), lambda: ReorderFilter(0.1),
                                  lambda: ConditionalFilter(DuplicateFilter())], ids=["dup", "reorder", "cond-dup"])
@pytest.mark.parametrize("direction", ["send", "recv"])
def test_fifo_rejects_duplicate_and_reorder(make, direction):
    """fifo is pysyncobj's TCP contract: installing a duplicating or reordering filter is a ValueError
    that says which network is needed, and nothing is installed."""
    with Cluster(nodes=1, seed=0) as c:
        add = c.add_send_filter if direction == "send" else c.add_recv_filter
        with pytest.raises(ValueError, match="unreliable"):
            add("n1", make())
        assert c._net.filters("n1") == ([], [])


# --- unreliable -------------------------------------------------------------------------------

def test_unreliable_duplicate_filter_duplicates_messages():
    """A DuplicateFilter on every node: every message sent meanwhile is delivered twice, and the
    cluster still works (duplicates are harmless to Raft)."""
    with Cluster(nodes=3, seed=6, network="unreliable") as c:
        c.wait_leader()
        recs = record_all_recv(c)
        for n in c.node_ids:
            c.add_send_filter(n, DuplicateFilter(1.0))
        since = c.now
        c.must_put("a", 1)
        c.run_for(1)
        counts = collections.Counter((e.src, e.dst, e.sent_at, e.payload)
                                     for r in recs.values() for e in r.envelopes
                                     if since <= e.sent_at <= c.now - 0.1)
        assert counts and set(counts.values()) == {2}
        assert c.must_get("a") == 1
        assert not c.node_errors


def test_unreliable_reorder_filter_reorders_a_link():
    """With narrow latency, ReorderFilter is what makes some messages on a link overtake earlier ones."""
    with Cluster(nodes=3, seed=1, network="unreliable", latency=(0.01, 0.01)) as c:
        recs = record_all_recv(c)
        c.wait_leader()
        _write_burst(c, 10)
        before = per_link_inversions([e for r in recs.values() for e in r.envelopes])
        assert before == 0  # equal latencies: nothing overtakes
        recs = record_all_recv(c)
        for n in c.node_ids:
            c.add_send_filter(n, ReorderFilter(0.2))
        _write_burst(c, 30, "x")
        c.run_for(1)
        assert per_link_inversions([e for r in recs.values() for e in r.envelopes]) > 0
        assert c.must_get("x29") == 29


# --- regressions of harness bugs found while writing these tests ----------------------------------

def test_fifo_conditional_partition_switched_off_reconnects():
    """Switching a ConditionalFilter(PartitionFilter) on cuts the link; switching it off should let the
    link come back after reconnect_delay like any heal, and the follower should catch up."""
    with Cluster(nodes=3, seed=1) as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        follower = others(c, leader)[0]
        cond = ConditionalFilter(PartitionFilter([leader]), enabled=False)
        c.add_send_filter(follower, cond)
        c.run_for(0.5)
        assert _connected(c, follower, leader)
        cond.switch(True)
        c.run_for(0.5)
        assert not _connected(c, follower, leader)
        cond.switch(False)
        c.run_for(2)
        assert _connected(c, follower, leader) and _connected(c, leader, follower)


@pytest.mark.parametrize("network", ["fifo", "unreliable"], ids=["fifo-net", "unreliable-net"])
def test_released_messages_still_pass_receivers_recv_filters(network):
    """Held on the sender, then released: the receiver's recv filters must still see (and here, drop)
    them, exactly as they would have without the hold."""
    with Cluster(nodes=3, seed=1, network=network) as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        follower = others(c, leader)[0]
        hold = HoldFilter(types=["append_entries"], predicate=lambda e: e.dst == follower)
        c.add_send_filter(leader, hold)
        c.run_for(0.3)
        held = {e.seq for e in hold.held}
        assert held
        seen = Recorder()
        c.add_recv_filter(follower, seen)
        hold.release()
        c.run_for(0.2)
        delivered = {e.seq for _, e in c.recent_messages if e.dst == follower}
        assert held <= {e.seq for e in seen.envelopes}, "released messages bypassed the recv chain"
        assert held <= delivered


def test_hold_filter_inside_conditional_filter_holds_without_cutting():
    """ConditionalFilter(HoldFilter) must behave like the bare HoldFilter: the fifo connection stays up
    while messages are held, nothing counts as dropped, and release() delivers them."""
    with Cluster(nodes=3, seed=1) as c:
        leader = c.wait_leader()
        c.run_for(0.5)
        follower = others(c, leader)[0]
        hold = HoldFilter(types=["append_entries"], predicate=lambda e: e.dst == follower)
        c.add_send_filter(leader, ConditionalFilter(hold))
        c.run_for(0.3)
        held = {e.seq for e in hold.held}
        assert held
        assert _connected(c, leader, follower), "holding a message cut the fifo connection"
        assert c._net.dropped == 0
        hold.release()
        c.run_for(0.2)
        assert held <= {e.seq for _, e in c.recent_messages}
