"""Deterministic cluster scenarios (TiKV's seed validation list), node errors and close()."""
from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

import pytest
from pysyncobj import replicated

from harness import Cluster, KVStore, NodeError
from harness.wire.filters import DelayFilter, DropPacketFilter, MessageTypeFilter
from harness.history import OK, PENDING
from harness.util import retry
from helpers import Recorder, others, roles_during


def _wait_op(c, op, timeout: float = 5.0):
    c.run_until(lambda: op.outcome != PENDING, timeout)
    return op


def _read_via(c, node_id: str, key, expected, attempts: int = 10):
    """Read ``key`` through the log via ``node_id`` until it returns ``expected`` (virtual-time retries)."""
    def attempt():
        op = _wait_op(c, c.get(key, via=node_id))
        assert op.outcome == OK, op
        assert op.value == expected, op
        return op
    return retry(attempt, attempts=attempts, backoff=0.2, factor=1.5, exceptions=(AssertionError,), cluster=c)


def _converged(c, ids=None) -> bool:
    states = [c.state(n) for n in (ids or c.up_ids())]
    return len({(s.commit_index, s.last_applied) for s in states}) == 1


# --- leadership and isolation -----------------------------------------------------------------

def test_isolated_leader_is_replaced_and_commits_nothing():
    """Isolating the leader: the majority elects a new leader in a higher term and keeps committing;
    the old leader's commit index and applied index stay put and a write through it never succeeds."""
    with Cluster(nodes=3, seed=7) as c:
        old = c.wait_leader()
        c.must_put("a", 1)
        before = c.state(old)
        c.isolate_node(old)
        stuck = c.put("b", 2, via=old)
        assert c.run_until(lambda: c.leader() not in (None, old), 10)
        new = c.leader()
        assert new != old and c.state(new).term > before.term
        c.must_put("c", 3)
        c.run_for(3)
        after = c.state(old)
        assert after.commit_index == before.commit_index
        assert after.last_applied == before.last_applied
        assert stuck.outcome != OK
        assert c.state(new).commit_index > before.commit_index
        c.heal()
        c.run_for(2)
        assert stuck.outcome != OK
        assert c.must_get("c") == 3
        assert c.must_get("b") is None  # the isolated leader's write was never committed
        assert not c.node_errors


def test_isolated_follower_does_not_stop_commits():
    """Isolating one follower of three: writes still commit; the follower's commit index is frozen."""
    with Cluster(nodes=3, seed=2) as c:
        leader = c.wait_leader()
        c.must_put("a", 0)
        follower = others(c, leader)[0]
        c.isolate_node(follower)
        frozen = c.state(follower).commit_index
        for i in range(5):
            c.must_put(f"k{i}", i)
        assert c.leader() == leader
        assert c.state(leader).commit_index >= frozen + 5
        assert c.state(follower).commit_index == frozen
        assert c.must_get("k4") == 4


def test_several_filters_on_several_nodes_at_once():
    """n1 cannot send votes, n2's messages are delayed 50 ms, n3 drops 10% of what it receives:
    a 5-node cluster still elects a leader other than n1, commits, and n2's messages are all late."""
    with Cluster(nodes=5, seed=3) as c:
        c.add_send_filter("n1", MessageTypeFilter(["request_vote"]))
        c.add_send_filter("n2", DelayFilter(0.05))
        c.add_recv_filter("n3", DropPacketFilter(0.1))
        late = {n: Recorder(lambda e: e.src == "n2") for n in others(c, "n2")}
        for n, r in late.items():
            c.add_recv_filter(n, r)
        leader = c.wait_leader()
        assert leader != "n1"
        for i in range(5):
            c.must_put(f"k{i}", i)
        seen = roles_during(c, ["n1"], 3)
        assert "leader" not in seen["n1"]
        lags = [t - e.sent_at for r in late.values() for t, e in r.seen]
        assert lags and min(lags) >= 0.05
        c.clear_all_filters()
        assert c.run_until(lambda: _converged(c), 10)
        assert c.must_get("k4") == 4
        assert not c.node_errors


def test_connected_is_what_each_node_was_told_of_its_links():
    """A cut closes a node's connections at once, a heal reopens them after ``reconnect_delay`` (0.2 s),
    a crash closes its peers' ends; and an unknown id names the argument."""
    with Cluster(3, seed=1) as c:
        leader = c.wait_leader()
        pairs = [(a, b) for a in c.node_ids for b in c.node_ids if a != b]
        assert all(c.connected(a, b) for a, b in pairs)
        c.isolate_node(leader)
        follower, other = others(c, leader)
        assert sorted(p for p in pairs if c.connected(*p)) == sorted([(follower, other), (other, follower)])
        c.heal()
        c.run_for(0.1)
        assert not c.connected(leader, follower)
        c.run_for(0.3)
        assert all(c.connected(a, b) for a, b in pairs)
        c.crash(follower)
        assert not c.connected(leader, follower) and not c.connected(other, follower)
        with pytest.raises(ValueError, match=r"a must be one of \['n1', 'n2', 'n3'\], got 'n9'"):
            c.connected("n9", leader)
        with pytest.raises(ValueError, match=r"b must be one of \['n1', 'n2', 'n3'\], got 'n9'"):
            c.connected(leader, "n9")


def test_partition_then_heal_minority_catches_up():
    """A 2|3 partition with the old leader in the minority: the majority commits new writes, the
    minority commits nothing; after heal the minority reaches the same commit/applied index and a
    linearizable read through a formerly partitioned node returns the latest value."""
    with Cluster(nodes=5, seed=4) as c:
        leader = c.wait_leader()
        c.must_put("k", "v0")
        minority = [leader, others(c, leader)[0]]
        majority = [n for n in c.node_ids if n not in minority]
        c.partition(minority, majority)
        # The minority may still spread the old leader's commit index among itself, never beyond it.
        ceiling = c.state(leader).commit_index
        for i in range(1, 6):
            c.must_put("k", f"v{i}")
        assert c.leader() in majority
        assert all(c.state(n).commit_index <= ceiling for n in minority)
        assert all(c.state(n).commit_index >= ceiling + 5 for n in majority)
        c.heal()
        assert c.run_until(lambda: _converged(c), 10)
        assert len({c.state(n).commit_index for n in c.node_ids}) == 1
        for n in minority:
            _read_via(c, n, "k", "v5")
        assert not c.node_errors


# --- crash and restart ------------------------------------------------------------------------

@pytest.mark.parametrize("victim", ["follower", "leader"])
def test_crash_restart_loses_no_acknowledged_write(victim):
    """Crash a follower or the leader mid-run and restart it from its journal and dump: every write
    acknowledged by must_put is read back, the incarnation went 1 -> 2, and the restarted node
    applies everything itself."""
    with Cluster(nodes=3, seed=5) as c:
        leader = c.wait_leader()
        written = {}
        for i in range(5):
            c.must_put(f"a{i}", i)
            written[f"a{i}"] = i
        target = leader if victim == "leader" else others(c, leader)[0]
        assert c.incarnation(target) == 1
        c.crash(target)
        assert not c.is_up(target) and c.node(target) is None and c.state(target).role == "crashed"
        for i in range(5):
            c.must_put(f"b{i}", i)
            written[f"b{i}"] = i
        c.force_snapshot(c.leader())
        c.run_for(0.5)
        c.restart(target)
        assert c.incarnation(target) == 2 and c.is_up(target)
        for key, value in written.items():
            assert c.must_get(key) == value
        assert c.run_until(lambda: _converged(c), 10)
        assert {k: c.node(target).local_get(k) for k in written} == written
        assert c.stats["crashes"] == 1 and c.stats["restarts"] == 1
        assert not c.node_errors


def test_whole_cluster_crash_and_restart_keeps_committed_state():
    """Every node crashes (no memory survives) and restarts from journal + dump: all acknowledged
    writes, some of them only in a snapshot, are still there."""
    with Cluster(nodes=3, seed=4) as c:
        c.wait_leader()
        for i in range(8):
            c.must_put(f"k{i}", i)
        c.force_snapshot(c.leader())
        c.run_for(0.5)
        for i in range(8, 12):
            c.must_put(f"k{i}", i)
        for n in c.node_ids:
            c.crash(n)
        c.run_for(1)
        for n in c.node_ids:
            c.restart(n)
        c.wait_leader()
        assert [c.incarnation(n) for n in c.node_ids] == [2, 2, 2]
        assert [c.must_get(f"k{i}") for i in range(12)] == list(range(12))
        assert not c.node_errors


@pytest.mark.parametrize("how", ["crash", "isolate"])
def test_lagging_follower_catches_up_by_snapshot(how):
    """A follower misses many entries while the others compact their logs; on return it must receive
    a 'snapshot' message and converge (same commit/applied index, same values)."""
    with Cluster(nodes=3, seed=3) as c:
        leader = c.wait_leader()
        c.must_put("k0", 0)
        lagger = others(c, leader)[0]
        (c.crash if how == "crash" else c.isolate_node)(lagger)
        for i in range(1, 30):
            c.must_put(f"k{i}", i)
        for n in others(c, lagger):
            c.force_snapshot(n)
        c.run_for(1)
        assert all(c.state(n).first_index > 1 for n in others(c, lagger))
        if how == "crash":
            c.restart(lagger)
        else:
            c.heal()
        kinds = Recorder(lambda e: e.dst == lagger)
        c.add_recv_filter(lagger, kinds)
        assert c.run_until(lambda: _converged(c), 10)
        assert "snapshot" in kinds.kinds()
        assert c.state(lagger).first_index > 1  # it installed the snapshot instead of replaying
        assert [c.node(lagger).local_get(f"k{i}") for i in range(30)] == list(range(30))
        assert c.must_get("k29") == 29
        assert not c.node_errors


# --- membership -------------------------------------------------------------------------------

def test_add_node_joins_and_counts_toward_quorum():
    """add_node: the new voter's membership lists all four nodes, it replicates the log, and it is
    needed for quorum (with one original follower down, 3 of 4 can only be reached through it)."""
    with Cluster(nodes=3, seed=1) as c:
        leader = c.wait_leader()
        for i in range(3):
            c.must_put(f"k{i}", i)
        new = c.add_node()
        assert new == "n4" and c.node_ids == ["n1", "n2", "n3", "n4"]
        change = c.membership_changes[-1]
        assert c.run_until(lambda: change.outcome != PENDING, 10) and change.outcome == OK
        assert c.run_until(lambda: c.state(new).last_applied == c.state(leader).last_applied, 10)
        for n in c.node_ids:
            assert c.state(n).membership == ("n1", "n2", "n3", "n4")
        assert [c.node(new).local_get(f"k{i}") for i in range(3)] == [0, 1, 2]
        c.crash([n for n in ("n1", "n2", "n3") if n != leader][0])
        c.must_put("after", 1)  # needs 3 of 4 acks: the leader, the other original and n4
        assert c.run_until(lambda: c.node(new).local_get("after") == 1, 5)
        assert not c.node_errors


def test_remove_node_disappears():
    """remove_node: once committed the node leaves node_ids, the others' membership, and the API."""
    with Cluster(nodes=3, seed=1) as c:
        leader = c.wait_leader()
        c.must_put("k", 0)  # pysyncobj denies membership changes until the leader committed in its term
        gone = others(c, leader)[0]
        change = c.remove_node(gone)
        assert c.run_until(lambda: change.outcome != PENDING, 10) and change.outcome == OK
        assert gone not in c.node_ids and gone not in c.voter_ids
        remaining = c.node_ids
        assert len(remaining) == 2 and leader in remaining
        c.run_for(1)
        for n in remaining:
            assert gone not in c.state(n).membership
        with pytest.raises(ValueError, match="node_id"):
            c.state(gone)
        c.must_put("k", 1)  # two voters left, both needed
        assert c.must_get("k") == 1


def test_readonly_node_replicates_but_never_votes_or_leads():
    """A read-only node catches up with the log, is not in anyone's voter membership, and stays a
    follower while the leader is isolated and while voters are down."""
    with Cluster(nodes=3, seed=2) as c:
        leader = c.wait_leader()
        for i in range(3):
            c.must_put(f"k{i}", i)
        ro = c.add_readonly_node()
        assert ro == "r1" and ro in c.node_ids and ro not in c.voter_ids
        assert not c.state(ro).voter
        assert c.run_until(lambda: c.state(ro).last_applied == c.state(leader).last_applied, 10)
        assert [c.node(ro).local_get(f"k{i}") for i in range(3)] == [0, 1, 2]
        for n in c.voter_ids:
            assert ro not in c.state(n).membership
        c.isolate_node(leader)
        roles = roles_during(c, [ro], 5)
        assert c.leader() not in (None, leader, ro)
        c.heal()
        c.must_put("k3", 3)
        assert c.run_until(lambda: c.node(ro).local_get("k3") == 3, 10)
        for n in c.voter_ids[:2]:
            c.crash(n)  # no quorum left: elections keep failing
        more = roles_during(c, [ro], 5)
        assert roles[ro] | more[ro] == {"follower"}
        assert not c.node_errors


def test_readonly_node_restart_catches_up():
    """A crashed read-only node restarts (incarnation 2) and applies writes made while it was down."""
    with Cluster(nodes=3, seed=2) as c:
        c.wait_leader()
        c.must_put("a", 1)
        ro = c.add_readonly_node()
        assert c.run_until(lambda: c.node(ro).local_get("a") == 1, 10)
        c.crash(ro)
        c.must_put("b", 2)
        c.restart(ro)
        assert c.incarnation(ro) == 2 and not c.state(ro).voter
        assert c.run_until(lambda: c.node(ro).local_get("b") == 2, 10)
        assert c.node(ro).local_get("a") == 1
        assert not c.node_errors


def test_filter_factories_cover_readonly_nodes_added_later():
    """A factory installed before add_node/add_readonly_node is asked for filters for both new nodes."""
    from harness.wire.filters import FilterFactory

    class Spy(FilterFactory):
        def __init__(self):
            self.asked = []

        def generate(self, node_id, all_nodes):
            self.asked.append(node_id)
            return [DelayFilter(0.0)]

    with Cluster(nodes=3, seed=2) as c:
        c.wait_leader()
        c.must_put("a", 1)
        spy = Spy()
        c.add_send_filter_factory(spy)
        assert spy.asked == ["n1", "n2", "n3"]
        new = c.add_node()
        assert new in spy.asked
        ro = c.add_readonly_node()
        assert ro in spy.asked


# --- client operations ------------------------------------------------------------------------

def test_operation_outcomes_for_crashed_proposers():
    """A write through a crashed node fails at once (NODE_DOWN); a write pending on a node that then
    crashes becomes unknown (PROPOSER_CRASHED) with no completion time; acknowledged writes carry
    the log index and term they were applied at."""
    from harness.history import FAILED, UNKNOWN
    with Cluster(nodes=3, seed=6) as c:
        leader = c.wait_leader()
        ok = c.must_put("a", 1)
        assert ok.outcome == OK and ok.index is not None and ok.index >= 2 and ok.term == c.state(leader).term
        follower = others(c, leader)[0]
        c.crash(follower)
        down = c.put("b", 2, via=follower)
        assert (down.outcome, down.reason) == (FAILED, "NODE_DOWN")
        c.isolate_node(leader)
        pending = c.put("c", 3, via=leader)
        c.run_for(0.5)
        assert pending.outcome == PENDING
        c.crash(leader)
        assert (pending.outcome, pending.reason, pending.complete) == (UNKNOWN, "PROPOSER_CRASHED", None)
        assert [o.outcome for o in c.history] == [OK, FAILED, UNKNOWN]


# --- exceptions inside nodes ------------------------------------------------------------------

class _Boom(KVStore):
    """A KVStore whose replicated set() raises when asked to store 'boom'."""

    @replicated
    def set(self, key, value):
        if value == "boom":
            raise RuntimeError("refusing to store the value boom")
        self._data[key] = value
        return value


def test_node_exception_becomes_node_error_and_run_continues():
    """An exception in a node's apply is recorded as a NodeError (node, incarnation, activity, time,
    traceback with the message) for each node that hit it, the write is not acknowledged, and the
    run returns instead of hanging or raising."""
    with Cluster(nodes=3, seed=4, node_class=_Boom) as c:
        c.wait_leader()
        c.must_put("a", 1)
        assert c.node_errors == []
        op = c.put("b", "boom")
        start = c.now
        c.run_for(2)
        assert c.now == pytest.approx(start + 2)
        assert c.node_errors
        assert op.outcome != OK
        for err in c.node_errors:
            assert isinstance(err, NodeError)
            assert err.node in c.node_ids and err.incarnation == 1
            assert err.activity == "tick"
            assert start <= err.time <= c.now
            assert "RuntimeError: refusing to store the value boom" in err.traceback
            assert err.node in str(err) and "refusing to store" in str(err)
        assert c.leader() in {e.node for e in c.node_errors}


def test_node_class_failing_to_start_raises_and_cleans_up(monkeypatch):
    """A node class whose constructor raises: Cluster() re-raises the error (not swallowed, not
    turned into a hang) and removes the temp dir it had created."""
    class Broken(KVStore):
        def __init__(self, *a, **k):
            raise RuntimeError("cannot start this node")

    created = []
    real = tempfile.mkdtemp

    def spy(*a, **k):
        path = real(*a, **k)
        created.append(path)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    with pytest.raises(RuntimeError, match="cannot start this node"):
        Cluster(nodes=3, node_class=Broken)
    monkeypatch.undo()
    assert len(created) == 1 and not Path(created[0]).exists()


# --- close ------------------------------------------------------------------------------------

def test_close_removes_temp_dir_and_is_idempotent():
    """close() deletes the cluster's directory (journals, dumps), can be called twice, and a closed
    cluster refuses to run."""
    c = Cluster(nodes=3, seed=1)
    c.wait_leader()
    c.must_put("a", 1)
    root = c._root
    assert root.is_dir() and any(root.rglob("journal*"))
    c.close()
    assert not root.exists()
    c.close()
    assert not root.exists()
    with pytest.raises(RuntimeError, match="closed"):
        c.run_for(1)


def test_context_manager_closes_on_exception():
    """Leaving the with-block by an exception still closes the cluster and removes its directory."""
    with pytest.raises(KeyError):
        with Cluster(nodes=1) as c:
            root = c._root
            raise KeyError("boom")
    assert not root.exists()


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("conf", [{}, {"appendEntriesUseBatch": False}], ids=["default", "no-batch-pipe"])
def test_close_leaks_no_file_descriptors(conf):
    """A cluster that crashed/restarted nodes, added and removed nodes and forced snapshots releases
    every file descriptor it opened once closed (also with appendEntriesUseBatch=False, where
    pysyncobj opens a pipe per node and never closes it itself)."""
    gc.collect()
    before = _fd_count()
    with Cluster(nodes=3, seed=2, **conf) as c:
        leader = c.wait_leader()
        c.must_put("a", 1)
        follower = others(c, leader)[0]
        c.crash(follower)
        for i in range(10):
            c.must_put(f"k{i}", i)
        for n in c.up_ids():
            c.force_snapshot(n)
        c.run_for(1)
        c.restart(follower)
        c.run_for(2)
        c.crash(leader)
        c.restart(leader)
        c.add_readonly_node()
        c.must_put("b", 2)  # a leader that committed in its term accepts membership changes
        added = c.add_node()
        c.run_for(2)
        change = c.remove_node(added)
        assert c.run_until(lambda: change.outcome != PENDING, 10) and change.outcome == OK
        assert _fd_count() > before  # journals are open while the cluster lives
    gc.collect()
    assert _fd_count() == before


# --- must_put / must_get liveness -------------------------------------------------------------

def _guard_history(c, limit: int = 500) -> None:
    """Fail loudly instead of looping forever if a client helper keeps proposing without end."""
    invoke = c.history.invoke

    def guarded(*a, **k):
        if len(c.history) >= limit:
            raise RuntimeError(f"guard: {limit} operations proposed, the client helper is looping")
        return invoke(*a, **k)
    c.history.invoke = guarded


def test_must_put_without_quorum_raises_after_timeout():
    """With both followers down no write can commit: must_put gives up with AssertionError once its
    virtual timeout has passed (it neither loops forever nor returns), and must_get likewise."""
    with Cluster(nodes=3, seed=1) as c:
        leader = c.wait_leader()
        for n in others(c, leader):
            c.crash(n)
        _guard_history(c)
        start = c.now
        with pytest.raises(AssertionError, match="did not commit within 3"):
            c.must_put("k", 1, timeout=3)
        assert start + 3 <= c.now
        with pytest.raises(AssertionError, match="did not commit"):
            c.must_get("k", timeout=2)


def test_must_put_moves_on_from_a_deposed_leader():
    """Right after the leader is cut into a minority, must_put's first attempt goes to that stale
    leader and stalls; must_put must retry through the majority's new leader and succeed."""
    with Cluster(nodes=5, seed=4) as c:
        leader = c.wait_leader()
        c.must_put("k", "v0")
        minority = [leader, others(c, leader)[0]]
        c.partition(minority, [n for n in c.node_ids if n not in minority])
        _guard_history(c)
        op = c.must_put("k", "v1", timeout=30)
        assert op.via not in minority
        assert c.history[len(c.history) - 1] is op and len(c.history) >= 3  # v0, stalled v1, v1
        assert c.must_get("k") == "v1"


# A fuzz campaign reported two leaders with disjoint quorums; the cause was the harness: an add the
# leader refused (REQUEST_DENIED: its term's no-op not applied yet) left the new node running as a
# voter, and restarted nodes were given it as a peer, so they counted its vote.
_REFUSED_ADDS = [
    ("start_cluster", dict(nodes=3, seed=1)),
    ("hold_messages", dict(node="n2", direction="send", kind="append_entries")),
    ("hold_messages", dict(node="n3", direction="send", kind="append_entries")),
    ("crash", dict(node="n1")),
    ("add_node", {}), ("add_node", {}), ("add_node", {}), ("add_node", {}),
    ("restart", dict(node="n1")),
    ("partition", dict(side=["n1", "n4", "n5", "n6", "n7"])),
    ("wait", dict(seconds=2.0)),
]


@pytest.mark.parametrize("seed", range(6))
def test_a_refused_add_leaves_no_phantom_voter(seed):
    from harness.fuzz.replay import default_machine

    steps = [dict(rule=rule, args=dict(args, seed=seed) if rule == "start_cluster" else args)
             for rule, args in _REFUSED_ADDS]
    run = default_machine("fifo").replay(steps)
    assert not run.failed, run.headline


def test_a_refused_add_retires_the_new_node_and_restarts_list_members_only():
    with Cluster(3, seed=1) as c:
        leader = c.wait_leader()
        for node_id in c.node_ids:  # nothing commits from now on
            c.add_send_filter(node_id, MessageTypeFilter({"append_entries"}))
        c.crash(leader)
        c.run_until(lambda: c.leader() not in (None, leader), timeout=10)
        new = c.add_node()  # the new leader's own no-op is not applied: refused, nothing appended
        change = c.membership_changes[-1]
        c.run_for(0.5)
        assert (change.node, change.outcome, change.reason) == (new, "failed", "REQUEST_DENIED")
        assert new not in c.node_ids and new not in c.voter_ids
        c.restart(leader)
        assert sorted(n.id for n in c.node(leader).otherNodes) == sorted(p for p in c.voter_ids if p != leader)
