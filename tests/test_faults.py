"""The faults of harness.sim.faults do what they say, refuse bad input in one line, and replay exactly.

Each fault is watched through what nodes actually receive (the cluster's delivery log) or what
their pysyncobj state shows, never through the harness' own bookkeeping alone.
"""
from __future__ import annotations

import contextlib

import pytest

from harness import Cluster, check_linearizable
from harness.adapter import observe as compat
from harness.adapter.patching import inject
from harness.adapter.probes import MEMBERSHIP
from harness.check.invariants import ElectionSafety
from harness.check.local_reads import check_local_reads
from harness.fuzz.faults import NemesisRules
from harness.history import FAILED, LOCAL_READ, OK, READ, UNKNOWN, WRITE, History
from harness.ledger.bugs import LEDGER, known_fixes
from harness.sim.faults import CAN_TRANSFER_LEADERSHIP, CLIENT_TIMEOUT
from harness.sim.network import SimNode
from harness.sim.storage import DUMP
from helpers import others, per_link_inversions

needs_transfer = pytest.mark.skipif(not CAN_TRANSFER_LEADERSHIP, reason="transferLeadership is 0.3.16+")


def _links(log, since: float = 0.0):
    """Directed links that delivered a message sent at or after ``since`` (earlier ones were in flight
    before the fault went in)."""
    return {(m["src"], m["dst"]) for m in log if m["sent"] >= since}


def _steady(c) -> tuple:
    """A 3-node cluster with a leader and a committed write: (leader, follower a, follower b)."""
    c.wait_leader()
    c.must_put("warm", 0)
    leader = c.leader()  # must_put may have waited out a change of leader
    a, b = others(c, leader)
    return leader, a, b


def _connected(c, a, b) -> bool:
    return c.node(a).isNodeConnected(SimNode(b))


# --- one directed link ------------------------------------------------------------------------

def test_one_way_cut_on_unreliable_loses_one_direction_only():
    """cut_link(A, B): nothing A sends reaches B, while B still hears its other peer and A still
    hears B and reaches its other peer."""
    with Cluster(nodes=3, seed=3, network="unreliable") as c:
        leader, a, b = _steady(c)
        c.record_messages()
        since = c.now
        c.cut_link(leader, a)
        c.run_for(2.0)
        links = _links(c.take_message_log(), since)
        assert (leader, a) not in links
        assert {(a, leader), (leader, b), (b, leader)} <= links  # a, hearing nothing, campaigns


def test_one_way_cut_on_fifo_keeps_the_connection_down_and_other_links_up():
    """On TCP a one-way cut kills the connection both ways (and no handshake succeeds meanwhile);
    the nodes' other connections are untouched, and it comes back after the heal."""
    with Cluster(nodes=3, seed=3) as c:
        leader, a, b = _steady(c)
        c.cut_link(leader, a)
        c.record_messages()
        since = c.now
        c.run_for(1.0)
        links = _links(c.take_message_log(), since)
        assert not _connected(c, leader, a) and not _connected(c, a, leader)
        assert (leader, a) not in links and (a, leader) not in links
        assert {(leader, b), (b, leader)} <= links
        c.heal()
        c.run_for(1.0)
        assert _connected(c, leader, a) and _connected(c, a, leader)


def test_delay_link_slows_one_direction_and_keeps_its_order_on_fifo():
    with Cluster(nodes=3, seed=5, latency=(0.001, 0.05)) as c:
        leader, a, b = _steady(c)
        c.delay_link(leader, a, 0.4)
        c.record_messages()
        start = c.now
        for i in range(20):
            c.put(f"k{i}", i)
            c.run_for(0.02)
        c.run_for(1.0)
        log = [m for m in c.take_message_log() if m["sent"] >= start]
        slow = [m for m in log if (m["src"], m["dst"]) == (leader, a)]
        fast = [m for m in log if (m["src"], m["dst"]) in ((leader, b), (a, leader))]
        assert slow and fast
        assert min(m["delivered"] - m["sent"] for m in slow) >= 0.4
        assert max(m["delivered"] - m["sent"] for m in fast) < 0.4
        assert [m["seq"] for m in slow] == sorted(m["seq"] for m in slow)


def test_drop_link_on_unreliable_and_fifo():
    """Rate 1 on unreliable: that direction is silent, the reverse flows.  On fifo a lost message
    resets the connection, which reconnects and is reset again by the next loss."""
    with Cluster(nodes=3, seed=2, network="unreliable") as c:
        leader, a, _ = _steady(c)
        c.drop_link(leader, a, 1.0)
        c.record_messages()
        since = c.now
        c.run_for(2.0)
        links = _links(c.take_message_log(), since)
        assert (leader, a) not in links and (a, leader) in links  # a campaigns: it hears no heartbeat
    with Cluster(nodes=3, seed=2) as c:
        leader, a, b = _steady(c)
        dropped = c._net.dropped
        c.drop_link(leader, a, 1.0)
        c.record_messages()
        since = c.now
        c.run_for(2.0)
        links = _links(c.take_message_log(), since)
        assert (leader, a) not in links and (leader, b) in links
        assert c._net.dropped > dropped + 1  # reconnected and lost again


def test_hold_link_holds_one_direction_until_released_in_order():
    with Cluster(nodes=3, seed=4) as c:
        leader, a, b = _steady(c)
        hold = c.hold_link(leader, a)
        c.record_messages()
        c.must_put("x", 1)  # committed by the leader and b alone
        c.run_for(0.5)
        log = c.take_message_log()
        assert (leader, a) not in _links(log) and (leader, b) in _links(log)
        assert c.state(a).last_index < c.state(leader).last_index
        assert len(hold.held) > 0 and hold.release() > 0
        c.run_for(0.5)
        released = [m for m in c.take_message_log() if (m["src"], m["dst"]) == (leader, a)]
        assert released and [m["seq"] for m in released] == sorted(m["seq"] for m in released)
        assert c.state(a).last_index == c.state(leader).last_index


# --- partition shapes -------------------------------------------------------------------------

def test_one_way_partition_is_asymmetric_on_unreliable():
    """partition_one_way([A], rest): A hears everyone, nobody hears A."""
    with Cluster(nodes=3, seed=1, network="unreliable") as c:
        leader, a, b = _steady(c)
        c.partition_one_way([leader], [a, b])
        c.record_messages()
        since = c.now
        c.run_for(3.0)
        links = _links(c.take_message_log(), since)
        assert not {(leader, a), (leader, b)} & links
        assert {(a, leader), (b, leader)} & links
        assert c.leader() in (a, b)  # they stopped hearing heartbeats and elected one of themselves


def test_majority_partition_keeps_the_majority_alive_only():
    with Cluster(nodes=5, seed=6) as c:
        c.wait_leader()
        minority = ["n1", "n2"]
        c.partition_majority(minority)
        c.run_for(5.0)
        c.must_put("m", 1, timeout=10)
        for n in minority:
            assert c.state(n).commit_index < c.state(c.leader()).commit_index
        assert c.leader() not in minority


def test_ring_and_majorities_ring_visibility():
    """Ring: only the two neighbours; majorities ring on 6: everyone sees a majority, no two the same."""
    with Cluster(nodes=6, seed=1) as c:
        order = ["n3", "n1", "n5", "n2", "n6", "n4"]
        c.partition_ring(order)
        hidden = {n: c.filters(n)[0][0].nodes for n in order}
        assert hidden["n3"] == frozenset(order) - {"n3", "n4", "n1"}
        c.heal()
        c.partition_majorities_ring(order)
        seen = {n: frozenset(order) - c.filters(n)[0][0].nodes for n in order}
        assert all(len(s) >= 4 for s in seen.values())
        assert len(set(seen.values())) == len(order)
        c.record_messages()
        c.run_for(3.0)
        assert all(seen[m["src"]] >= {m["dst"]} for m in c.take_message_log())


# --- process pauses ---------------------------------------------------------------------------

def test_paused_node_log_does_not_change_and_it_catches_up_after():
    with Cluster(nodes=3, seed=8) as c:
        leader, a, _ = _steady(c)
        before = c.state(a)
        c.pause(a, 3.0)
        assert c.is_paused(a)
        for i in range(5):
            c.must_put(f"p{i}", i)
        c.run_for(1.0)
        during = c.state(a)
        assert (during.last_index, during.commit_index, during.term) == \
            (before.last_index, before.commit_index, before.term)
        c.run_for(2.5)
        assert not c.is_paused(a)
        c.run_for(1.0)
        assert c.state(a).commit_index == c.state(leader).commit_index > before.commit_index
        assert not c.node_errors


def test_paused_leader_resumes_as_leader_and_steps_down_without_breaking_safety():
    """The leader stops for 5 s; the others elect a new one; when it continues it still believes it
    leads, handles its backlog (the new term's messages) and steps down: one leader per term."""
    with Cluster(nodes=3, seed=9) as c:
        checker = ElectionSafety()
        leader, a, b = _steady(c)
        old_term = c.state(leader).term
        c.pause(leader, 5.0)
        for _ in range(40):
            c.run_for(0.125)
            assert checker.check(c.observe()) == []
            if c.is_paused(leader):
                assert c.state(leader).role == "leader" and c.state(leader).term == old_term
        assert not c.is_paused(leader)
        new = c.leader()
        assert new in (a, b) and c.state(new).term > old_term
        assert c.state(leader).role == "follower" and c.state(leader).term == c.state(new).term
        c.must_put("after", 1)


def test_crash_while_paused_drops_the_backlog_and_the_resume():
    with Cluster(nodes=3, seed=8) as c:
        _, a, _ = _steady(c)
        c.pause(a, 2.0)
        c.must_put("x", 1)
        c.crash(a)
        assert not c.is_paused(a)
        c.run_for(2.5)
        c.restart(a)
        c.run_for(1.0)
        assert c.state(a).up and not c.node_errors


def test_pause_bad_input():
    with Cluster(nodes=3, seed=0) as c:
        c.wait_leader()
        for bad in (0, -1, 61, float("nan"), "1", True):
            with pytest.raises(ValueError, match=r"^seconds must be in \(0, 60\] virtual seconds"):
                c.pause("n1", bad)
        with pytest.raises(ValueError, match="node_id must be one of"):
            c.pause("n9", 1)
        c.pause("n1", 1)
        with pytest.raises(ValueError, match="already paused"):
            c.pause("n1", 1)
        c.crash("n2")
        with pytest.raises(ValueError, match="crashed"):
            c.pause("n2", 1)


# --- clock skew -------------------------------------------------------------------------------

def test_fast_node_times_out_first_and_slow_one_later():
    """After the leader dies, the follower at 2x (timeout 0.2–0.7 s of virtual time) starts an
    election before the one at 0.5x (0.8–2.8 s) every time."""
    for seed in range(4):
        with Cluster(nodes=3, seed=seed) as c:
            leader, a, b = _steady(c)
            c.skew_clock(a, 2.0)
            c.skew_clock(b, 0.5)
            term = c.state(a).term
            c.crash(leader)
            assert c.run_until(lambda: max(c.state(a).term, c.state(b).term) > term, 5.0)
            assert c.state(a).term > term and c.state(b).term == term
            assert c.wait_leader() == a


def test_skewed_clock_is_continuous_and_survives_restart():
    with Cluster(nodes=3, seed=1) as c:
        c.wait_leader()
        t0 = c.local_time("n1")
        c.skew_clock("n1", 2.0)
        c.run_for(1.0)
        assert c.local_time("n1") == pytest.approx(t0 + 2.0, abs=1e-3)
        c.skew_clock("n1", 0.5)
        t1 = c.local_time("n1")
        c.run_for(1.0)
        assert c.local_time("n1") == pytest.approx(t1 + 0.5, abs=1e-3)
        assert c.clock_rate("n1") == 0.5 and c.clock_rate("n2") == 1.0
        c.crash("n1")
        c.restart("n1")
        c.run_for(1.0)
        assert c.clock_rate("n1") == 0.5 and not c.node_errors


@pytest.mark.parametrize("bad", [0.49, 2.01, 0, -1, "2", None, True])
def test_skew_bad_input(bad):
    with Cluster(nodes=1, seed=0) as c:
        with pytest.raises(ValueError, match=r"^rate must be a number in \[0.5, 2.0\]"):
            c.skew_clock("n1", bad)


# --- connection fidelity on fifo --------------------------------------------------------------

def _dead_leader_messages(old_connections_readable: bool):
    """The leader's messages to a follower are on a 1 s slow path when the leader crashes."""
    with Cluster(nodes=3, seed=2, old_connections_readable=old_connections_readable) as c:
        leader, a, _ = _steady(c)
        c.delay_link(leader, a, 1.0)
        for i in range(3):
            c.put(f"k{i}", i)
            c.run_for(0.1)
        c.record_messages()
        crashed_at = c.now
        c.crash(leader)
        c.run_for(3.0)
        return [m for m in c.take_message_log() if m["src"] == leader and m["delivered"] > crashed_at]


def test_a_dead_incarnations_messages_are_lost_by_default_and_readable_with_the_option():
    assert _dead_leader_messages(False) == []
    late = _dead_leader_messages(True)
    assert late and all(m["delivered"] - m["sent"] >= 1.0 for m in late)


def test_old_connection_messages_can_arrive_after_the_new_connections():
    """A slow old connection and a fast new one: what the connecting node (the greater id) sent on
    the old one arrives after what it sends on the new one, order kept within each connection; the
    other direction stays in order (the connecting node closes its old socket before it reconnects).
    Never without the option."""
    def run(option: bool):
        with Cluster(nodes=3, seed=4, old_connections_readable=option) as c:
            leader, a, _ = _steady(c)
            hi, lo = max(leader, a), min(leader, a)
            c.delay_link(hi, lo, 1.5)
            c.run_for(0.3)
            c.record_messages()
            c.heal()
            c.drop_link(hi, lo, 1.0)  # the next message is lost: the connection resets
            c.run_for(0.15)
            c.heal()  # and comes back 0.2 s later, on the fast path
            c.run_for(3.0)
            log = [_Seq(m) for m in c.take_message_log()]
            assert not c.node_errors
            return (per_link_inversions([m for m in log if (m.src, m.dst) == (hi, lo)]),
                    per_link_inversions([m for m in log if (m.src, m.dst) == (lo, hi)]))

    assert run(True)[0] > 0 and run(True)[1] == 0
    assert run(False) == (0, 0)


class _Seq:
    """A delivery-log entry shaped like an Envelope for helpers.per_link_inversions."""

    def __init__(self, m) -> None:
        self.src, self.dst, self.seq = m["src"], m["dst"], m["seq"]


def test_old_connections_readable_needs_fifo():
    with pytest.raises(ValueError, match="^old_connections_readable must be a bool, and True only with network='fifo'"):
        Cluster(nodes=1, network="unreliable", old_connections_readable=True)
    with pytest.raises(ValueError, match="^old_connections_readable must be a bool"):
        Cluster(nodes=1, old_connections_readable="yes")


# --- leadership transfer ----------------------------------------------------------------------

@needs_transfer
def test_transfer_leadership_moves_the_leader():
    with Cluster(nodes=3, seed=1) as c:
        leader, a, _ = _steady(c)
        c.run_for(0.5)  # pysyncobj refuses a target that has not acknowledged the leader's whole log
        record = c.transfer_leadership(a)
        c.run_until(lambda: c.leader() == a, 5.0)
        assert record.outcome == OK and c.leader() == a
        assert c.state(a).term > c.state(leader).term - 1
        c.must_put("after", 1)


@needs_transfer
def test_transfer_to_a_lagging_node_is_refused():
    with Cluster(nodes=3, seed=1) as c:
        leader, a, _ = _steady(c)
        c.hold_link(leader, a)
        c.must_put("x", 1)
        record = c.transfer_leadership(a)
        c.run_for(1.0)
        assert record.outcome == FAILED and record.reason == "REQUEST_DENIED" and c.leader() == leader


@needs_transfer
def test_transfer_bad_input():
    with Cluster(nodes=3, seed=1) as c:
        with pytest.raises(ValueError, match="there is none"):
            c.transfer_leadership("n1")
        leader = c.wait_leader()
        with pytest.raises(ValueError, match="^to must be None or a voter other than the leader"):
            c.transfer_leadership(leader)
        with pytest.raises(ValueError, match="^to must be one of"):
            c.transfer_leadership("n9")


@pytest.mark.skipif(CAN_TRANSFER_LEADERSHIP, reason="only releases without transferLeadership")
def test_transfer_needs_a_release_that_has_it():
    with Cluster(nodes=3, seed=1) as c:
        c.wait_leader()
        with pytest.raises(NotImplementedError, match="0.3.16 or later"):
            c.transfer_leadership()


# --- clients ----------------------------------------------------------------------------------

def test_timed_put_gives_up_as_unknown():
    with Cluster(nodes=3, seed=1) as c:
        leader, _, _ = _steady(c)
        c.isolate_node(leader)
        op = c.timed_put("k", 1, 0.5, via=leader)
        c.run_for(1.0)
        assert (op.outcome, op.reason) == (UNKNOWN, CLIENT_TIMEOUT)
        c.heal()
        done = c.timed_put("k", 2, 5.0)
        c.run_for(1.0)
        assert done.outcome in (OK, UNKNOWN)
        for bad in (0, -1, "1"):
            with pytest.raises(ValueError, match=r"^timeout must be in \(0, inf\] virtual seconds"):
                c.timed_put("k", 3, bad)


def test_local_reads_are_recorded_stale_allowed_and_kept_out_of_linearizability():
    """A partitioned ex-leader answers locally with its old value: stale, allowed; the history stays
    linearizable because local reads are judged by their own model."""
    with Cluster(nodes=3, seed=1) as c:
        leader, a, b = _steady(c)
        c.must_put("k", 1)
        c.run_for(0.5)
        c.partition([leader], [a, b])
        c.run_for(3.0)
        c.must_put("k", 2)
        stale = c.local_read("k", via=leader)
        fresh = c.local_read("k", via=c.leader())
        assert (stale.kind, stale.value, fresh.value) == (LOCAL_READ, 1, 2)
        assert stale.incarnation == 1 and stale.index < fresh.index
        assert check_linearizable(c.history).ok and check_local_reads(c.history) == []


def _history(*ops):
    h = History()
    for kind, key, value, via, t0, t1, outcome, index, inc in ops:
        op = h.invoke(kind, key, value, via, t0)
        op.index, op.incarnation = index, inc
        h.finish(op, outcome, None, t1)
    return h


def test_local_read_checker_flags_going_back_future_and_unwritten_values():
    writes = [(WRITE, "k", 1, "n1", 0.0, 1.0, OK, 5, None), (WRITE, "k", 2, "n1", 1.0, 2.0, OK, 7, None)]
    ok = _history(*writes, (LOCAL_READ, "k", 2, "n2", 3.0, 3.0, OK, 7, 1), (LOCAL_READ, "k", 1, "n3", 3.0, 3.0, OK, 6, 1),
                  (LOCAL_READ, "k", 1, "n2", 4.0, 4.0, OK, 5, 2))  # a new incarnation starts over
    assert check_local_reads(ok) == []
    back = check_local_reads(_history(*writes, (LOCAL_READ, "k", 2, "n2", 3.0, 3.0, OK, 7, 1),
                                      (LOCAL_READ, "k", 1, "n2", 4.0, 4.0, OK, 8, 1)))
    assert len(back) == 1 and "older than" in back[0]
    rolled = check_local_reads(_history(*writes, (LOCAL_READ, "k", 2, "n2", 3.0, 3.0, OK, 7, 1),
                                        (LOCAL_READ, "j", None, "n2", 4.0, 4.0, OK, 6, 1)))
    assert len(rolled) == 1 and "had applied up to 7" in rolled[0]
    future = check_local_reads(_history(*writes, (LOCAL_READ, "k", 2, "n2", 3.0, 3.0, OK, 6, 1)))
    assert len(future) == 1 and "applied only up to 6" in future[0]
    unwritten = check_local_reads(_history(*writes, (LOCAL_READ, "k", 9, "n2", 3.0, 3.0, OK, 7, 1),
                                           (WRITE, "k", 3, "n1", 4.0, 5.0, FAILED, None, None),
                                           (LOCAL_READ, "k", 3, "n3", 6.0, 6.0, OK, 9, 1)))
    assert len(unwritten) == 2 and all("no write" in p for p in unwritten)
    reads_through_log = _history(*writes, (READ, "k", 2, "n1", 3.0, 4.0, OK, 8, None))
    assert check_local_reads(reads_through_log) == []


# --- bad input of the link faults and shapes --------------------------------------------------

def test_link_and_shape_bad_input():
    with Cluster(nodes=3, seed=0) as c:
        with pytest.raises(ValueError, match="^dst must be another node than src"):
            c.cut_link("n1", "n1")
        with pytest.raises(ValueError, match="^src must be one of"):
            c.delay_link("x", "n1", 1)
        with pytest.raises(ValueError, match="^dst must be one of"):
            c.drop_link("n1", "x", 0.5)
        with pytest.raises(ValueError, match="^seconds must be >= 0"):
            c.delay_link("n1", "n2", -1)
        with pytest.raises(ValueError, match=r"^rate must be a number in \[0, 1\]"):
            c.drop_link("n1", "n2", 2)
        with pytest.raises(ValueError, match="^types must be a non-empty subset"):
            c.hold_link("n1", "n2", ["nope"])
        with pytest.raises(ValueError, match="^senders and receivers must be disjoint"):
            c.partition_one_way(["n1"], ["n1", "n2"])
        with pytest.raises(ValueError, match="^receivers must name at least one"):
            c.partition_one_way(["n1"], [])
        with pytest.raises(ValueError, match="^senders must be a collection of node ids"):
            c.partition_one_way("n1", ["n2"])
        with pytest.raises(ValueError, match="^minority must hold fewer than half of the 3 nodes"):
            c.partition_majority(["n1", "n2"])
        with pytest.raises(ValueError, match="^order must name at least 4 nodes"):
            c.partition_ring()
    with Cluster(nodes=4, seed=0) as c:
        with pytest.raises(ValueError, match="^order must name each node at most once"):
            c.partition_majorities_ring(["n1", "n2", "n3", "n1"])
        with pytest.raises(ValueError, match="^order must be one of"):
            c.partition_ring(["n1", "n2", "n3", "n7"])


# --- determinism ------------------------------------------------------------------------------

def _every_fault(seed: int, network: str) -> str:
    with Cluster(nodes=5, seed=seed, network=network, old_connections_readable=network == "fifo") as c:
        leader = c.wait_leader()
        rest = others(c, leader)
        c.skew_clock(rest[0], 1.5)
        c.delay_link(leader, rest[1], 0.3)
        c.drop_link(rest[2], leader, 0.3)
        for i in range(5):
            c.put(f"k{i}", i, via=rest[i % 4])
            c.local_read(f"k{i}", via=rest[3])
        c.pause(rest[3], 1.5)
        c.run_for(2.0)
        c.partition_majorities_ring()
        c.run_for(2.0)
        c.heal()
        c.partition_one_way([rest[0]], rest[1:])
        c.timed_put("t", 1, 0.5)
        c.run_for(2.0)
        c.heal()
        c.must_put("end", 1)
        if CAN_TRANSFER_LEADERSHIP:
            c.transfer_leadership()
            c.run_for(2.0)
        assert not c.node_errors
        return c.trace_digest()


@pytest.mark.parametrize("network", ["fifo", "unreliable"])
def test_same_seed_same_faults_same_digest(network):
    assert _every_fault(5, network) == _every_fault(5, network)


class _Nemesis(NemesisRules):
    """The nemesis rules as the fuzzer drives them, on the default fifo network."""


_EVERY_RULE = [
    ("start_cluster", dict(nodes=5, seed=3)), ("write", dict(key="a", via="leader")),
    ("delay_link", dict(src="n1", dst="n2", seconds=0.3)), ("drop_link", dict(src="n3", dst="n1", rate=0.3)),
    ("hold_link", dict(src="n2", dst="n4", kind="append_entries")), ("release_held", {}),
    ("block_link_type", dict(src="n4", dst="n5", kind="request_vote")), ("cut_link", dict(src="n5", dst="n1")),
    ("heal", {}), ("partition_one_way", dict(senders=["n1"])), ("heal", {}),
    ("partition_majority", dict(minority=["n4", "n5"])), ("heal", {}),
    ("partition_ring", dict(order="n3 n1 n5 n2 n4 n6 n7 r1 r2")), ("heal", {}),
    ("partition_majorities_ring", dict(order="n2 n4 n1 n3 n5 n6 n7 r1 r2")), ("heal", {}),
    ("pause", dict(node="leader", seconds=2.0)), ("wait", dict(seconds=2.0)),
    ("skew_clock", dict(node="n2", rate=2.0)), ("transfer_leadership", dict(to="any")),
    ("write_with_timeout", dict(key="b", via="n3", timeout=0.1)),
    ("concurrent_writes", dict(vias=["n1", "n2", "n4"], same_key=True)),
    ("local_read", dict(key="a", via="n5")), ("wait", dict(seconds=2.0)),
    ("crash_mid_change", dict(node="n3", removing=None)), ("restart", dict(node="n3")), ("wait", dict(seconds=2.0)),
    ("crash_mid_snapshot", dict(node="n2")), ("restart", dict(node="n2")), ("wait", dict(seconds=2.0)),
    ("isolate", dict(node="n4")), ("snapshot", dict(node="n1")), ("heal", {}), ("snapshot_mid_catch_up", dict(node="n4")),
]


def test_every_nemesis_rule_replays_to_the_same_digests():
    """Recorded steps (as counterexample.json stores them: frozensets as lists, ring orders as
    strings) run every new rule; two replays agree step by step, and the invariants hold."""
    steps = [{"rule": rule, "args": args} for rule, args in _EVERY_RULE]
    first, second = _Nemesis.replay(steps), _Nemesis.replay(steps)
    assert first.error is None, first.headline
    assert first.rules[:len(steps)] == [rule for rule, _ in _EVERY_RULE]
    assert first.digests == second.digests and first.digests[-1] is not None


# Finding 1 through the nemesis rule: 5 nodes, {n4, n5} cut off from the leader's side, two voters added at once.
_TWO_CHANGES = [{"rule": rule, "args": args} for rule, args in [
    ("start_cluster", dict(nodes=5, seed=0)), ("wait", dict(seconds=2.0)),
    ("partition_majority", dict(minority=["n4", "n5"])), ("add_two_nodes_at_once", {}),
    ("wait", dict(seconds=2.0)), ("wait", dict(seconds=2.0)), ("heal", {}), ("wait", dict(seconds=8.0))]]


def test_two_membership_changes_at_once_reach_finding_1_and_triage_names_it():
    from harness.ledger.triage import triage

    run = _Nemesis.replay(_TWO_CHANGES, detailed=False)
    assert run.error is not None and "state_machine_safety" in str(run.error)
    assert triage(_Nemesis, _TWO_CHANGES).label == "known: finding 1"


def test_with_finding_1_s_fix_the_same_steps_pass():
    with inject("membership_change_guard"):
        run = _Nemesis.replay(_TWO_CHANGES, detailed=False)
    assert run.error is None, run.headline


@contextlib.contextmanager
def _driven(nodes: int, seed: int):
    """The nemesis machine driven by hand: (machine, cluster, leader) once a leader is elected; the
    machine's teardown (liveness and the end-of-run checks) when the block ends."""
    m = _Nemesis()
    try:
        m.start_cluster(nodes=nodes, seed=seed)
        m.wait(seconds=2.0)
        yield m, m.cluster, m.cluster.leader()
    finally:
        m.teardown()


def test_crash_mid_change_crashes_the_node_the_instant_the_leader_counts_it_holding_the_change():
    with _driven(nodes=5, seed=3) as (m, c, leader):
        follower, _, lagging, *_ = others(c, leader)
        for bad in (dict(node=lagging, removing=lagging), dict(node="n9", removing=None)):
            m.crash_mid_change(**bad)  # removing the node itself, or a node the cluster lacks: nothing
        assert not c.membership_changes and c.is_up(lagging)
        c.isolate_node(lagging)  # it never gets the change: no crash, the change goes on
        m.crash_mid_change(node=lagging, removing=None)
        assert c.is_up(lagging) and c.membership_changes[-1].node == "n6"
        m.wait(seconds=2.0)
        assert c.membership_changes[-1].outcome == OK
        c.heal()
        m.crash_mid_change(node=follower, removing=None)  # adds n7
        assert not c.is_up(follower)
        changes = [e for e in compat.read_journal_file(c.storage.path(follower)) if e.command[:1] == MEMBERSHIP]
        assert b"n7" in changes[-1].command, changes
        assert c.state(leader).match_index[follower] >= changes[-1].index
        m.wait(seconds=2.0)
        assert c.membership_changes[-1].outcome == OK
        m.crash_mid_change(node=leader, removing="n6")  # the leader crashes as it appends the removal
        assert not c.is_up(leader)
        assert c.membership_changes[-1].kind == "remove" and c.membership_changes[-1].outcome != OK


# Finding 23 through crash_mid_change: n2 has a dump, {n3, n4} are cut off, n2 crashes holding the
# uncommitted "add n6", n7 joins, a write commits, and n2 restarts among n3 and n4.
_CRASH_MID_CHANGE = [{"rule": rule, "args": args} for rule, args in [
    ("start_cluster", dict(nodes=5, seed=3)), ("wait", dict(seconds=2.0)), ("write", dict(key="a", via="leader")),
    ("snapshot", dict(node="n2")), ("wait", dict(seconds=0.5)), ("partition", dict(side=["n3", "n4"])),
    ("crash_mid_change", dict(node="n2", removing=None)), ("wait", dict(seconds=0.5)), ("add_node", {}),
    ("wait", dict(seconds=0.5)), ("write", dict(key="b", via="leader")), ("heal", {}),
    ("partition", dict(side=["n2", "n3", "n4"])), ("restart", dict(node="n2")), ("wait", dict(seconds=8.0))]]


# Finding 5 through crash_mid_snapshot: 3 nodes, the third cut off; the follower crashes with its dump
# in place and the write it acknowledged in its log, the leader crashes, the follower restarts.
_CRASH_MID_SNAPSHOT = [{"rule": rule, "args": args} for rule, args in [
    ("start_cluster", dict(nodes=3, seed=0)), ("wait", dict(seconds=2.0)), ("isolate", dict(node="n2")),
    ("crash_mid_snapshot", dict(node="n1")), ("crash", dict(node="n3")), ("restart", dict(node="n1")),
    ("heal", {}), ("wait", dict(seconds=8.0))]]


def _but(bug: int) -> list:
    """Every known fix of the installed release but ``bug``'s own: without them, a bug only 0.3.11 has
    (finding 7) can break the same steps first."""
    return [fix for fix in known_fixes() if fix != LEDGER[bug].fix]


# Finding 16 through snapshot_mid_catch_up: n1, isolated, appends a write alone; n3 is elected and commits
# one more; the rule compacts n3 and arms; on the heal n1 comes to need a snapshot and n3 compacts again at
# that instant.  Its next send to n1 falls in the tick its serializer is busy: a snapshot message without data.
_SNAPSHOT_MID_CATCH_UP = [{"rule": rule, "args": args} for rule, args in [
    ("start_cluster", dict(nodes=3, seed=3)), ("wait", dict(seconds=2.0)), ("write", dict(key="a", via="leader")),
    ("isolate", dict(node="n1")), ("write", dict(key="a", via="n1")), ("wait", dict(seconds=2.0)),
    ("write", dict(key="b", via="leader")), ("snapshot_mid_catch_up", dict(node="n1")), ("heal", {})]]


@pytest.mark.parametrize("steps, bug, invariant", [(_CRASH_MID_CHANGE, 23, "leader_completeness"),
                                                   (_CRASH_MID_SNAPSHOT, 5, "leader_completeness"),
                                                   (_SNAPSHOT_MID_CATCH_UP, 16, "state_machine_safety")],
                         ids=["23", "5", "16"])
def test_a_crash_or_snapshot_mid_window_reaches_its_finding_and_triage_names_it(steps, bug, invariant):
    from harness.ledger.triage import triage

    with inject(*_but(bug)):
        run = _Nemesis.replay(steps, detailed=False)
        assert run.error is not None and invariant in str(run.error), run.headline
        assert triage(_Nemesis, steps).label == f"known: finding {bug}"
    with inject(*known_fixes()):
        run = _Nemesis.replay(steps, detailed=False)
    assert run.error is None, run.headline


def test_crash_mid_snapshot_crashes_the_follower_with_its_dump_in_place_and_the_write_in_its_log():
    with _driven(nodes=3, seed=0) as (m, c, leader):
        follower, _ = others(c, leader)
        m.crash_mid_snapshot(node=leader)  # the leader, or a node the cluster lacks: nothing
        m.crash_mid_snapshot(node="n9")
        assert c.is_up(leader) and not c.storage.path(leader, DUMP).exists()
        before = len(c.history)
        m.crash_mid_snapshot(node=follower)
        write = c.history[before]
        assert not c.is_up(follower) and write.outcome == OK
        assert c.storage.path(follower, DUMP).exists()  # the dump is in place, the log untruncated:
        on_disk = compat.read_journal_file(c.storage.path(follower))
        assert on_disk[0].index == 1 and on_disk[-1].index >= write.index
        assert not c.storage.is_enabled("crash_between_dump_and_truncate", follower)
        m.restart(node=follower)
        m.wait(seconds=2.0)
        assert c.is_up(follower)


def test_crash_mid_snapshot_lets_a_node_whose_removal_commits_meanwhile_go():
    """The follower's removal, proposed just before, commits while the rule waits for its acknowledgement:
    the node is retired under the rule, which must not ask after it again (it raised ValueError, found by
    the CI's NemesisRaft run)."""
    with _driven(nodes=5, seed=0) as (m, c, leader):
        follower = others(c, leader)[0]
        c.isolate_node(follower)  # it never acknowledges the write; the other four commit its removal
        c.remove_node(follower)
        m.crash_mid_snapshot(node=follower)
        assert follower not in c.node_ids and c.membership_changes[-1].outcome == OK


def test_snapshot_mid_catch_up_compacts_the_leader_again_the_instant_a_deposed_leader_needs_a_snapshot():
    """With every known fix in (without them the snapshot commits old's stale entries: findings 3 and 16)."""
    with inject(*known_fixes()), _driven(nodes=3, seed=0) as (m, c, old):
        m.snapshot_mid_catch_up(node="n9")  # a node the cluster lacks: nothing
        assert c.stats["snapshots_forced"] == 0
        c.isolate_node(old)
        m.write(key="a", via=old)  # appended by the soon-deposed leader alone: uncommitted
        m.wait(seconds=2.0)
        new = c.leader()
        assert new != old and c.state(old).last_index > c.state(old).commit_index
        for _ in range(3):
            m.write(key="b", via="leader")
        at_compaction = []
        force = c.force_snapshot

        def watched(node_id):  # what the leader knew of the old one at each compaction
            state = c.state(node_id)
            at_compaction.append((node_id, state.next_index[old], state.first_index))
            force(node_id)

        c.force_snapshot = watched
        m.snapshot_mid_catch_up(node=old)  # compacts new now; old is cut off, so the second waits
        assert [node for node, _, _ in at_compaction] == [new]
        m.heal()  # the step that reconnects old, and its catch-up, fire it
        assert len(at_compaction) == 2
        compacted, next_index, first_index = at_compaction[1]
        assert compacted == new and next_index <= first_index
        m.wait(seconds=8.0)
        assert len(at_compaction) == 2  # once
        assert c.state(new).next_index[old] > c.state(new).first_index  # it caught up
        assert c.state(old).snapshots_installed >= 1


def test_snapshot_mid_catch_up_waits_for_a_follower_with_entries_it_has_not_seen_committed():
    """A follower that only lags (its log a prefix of the leader's) catches up without the second compaction."""
    with inject(*known_fixes()), _driven(nodes=3, seed=0) as (m, c, leader):
        follower, _ = others(c, leader)
        c.isolate_node(follower)
        for _ in range(3):
            m.write(key="a", via="leader")
        m.snapshot_mid_catch_up(node="any")
        assert c.stats["snapshots_forced"] == 1
        m.heal()
        m.wait(seconds=8.0)
        assert c.state(follower).snapshots_installed >= 1 and c.stats["snapshots_forced"] == 1


def test_when_runs_the_action_once_at_the_first_instant_the_predicate_holds():
    with Cluster(3, seed=1) as c:
        leader = c.wait_leader()
        fired = []
        c.when(lambda: c.now >= 0, lambda: fired.append(("at once", c.now)), within=1.0)
        c.when(lambda: not c.connected(leader, others(c, leader)[0]), lambda: fired.append(("cut", c.now)),
               within=1.0)
        c.when(lambda: True, lambda: fired.append("now"), within=0.0)  # holds now: fires now
        c.when(lambda: c.state(leader).term > 99, lambda: fired.append("expired"), within=0.5)  # never holds
        assert fired[0][0] == "at once" and fired[1] == "now" and len(fired) == 2
        c.run_for(0.3)
        c.isolate_node(leader)
        assert len(fired) == 2  # checked after events, not on the cut itself
        c.run_for(0.3)
        assert fired[2][0] == "cut" and len(fired) == 3
        c.heal()
        c.run_for(2.0)
        assert len(fired) == 3  # each fired once; the last one expired
        for bad in (dict(predicate=None, action=print, within=1.0), dict(predicate=print, action=1, within=1.0)):
            with pytest.raises(ValueError, match="predicate and action must be callables"):
                c.when(**bad)
        with pytest.raises(ValueError, match="within must be"):
            c.when(print, print, within=-1.0)
