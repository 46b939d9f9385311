"""pysyncobj's own test scenarios (test_syncobj.py), rewritten for the simulated cluster.

pysyncobj's tests start real TCP nodes on localhost and sleep; here the same
stories run in virtual time over the fifo network, with a replicated counter
like pysyncobj's ``TestObj`` where the story is about counting.
"""
from __future__ import annotations

import os

from pysyncobj import replicated

from harness import Cluster, KVStore
from harness.history import OK, PENDING

from ._support import Watched, converged, data, node_dir, others, two_leaders_after_restart_on_0_3_11


class Counter(KVStore):
    """pysyncobj's TestObj in spirit: ``set(key, n)`` adds n to counter ``key`` and returns the sum."""

    @replicated
    def set(self, key, value):
        self._data[key] = self._data.get(key, 0) + value
        return self._data[key]


def _counts(c: Cluster, key: str = "counter"):
    return {n: c.node(n).local_get(key) for n in c.up_ids()}


def test_sync_two_objects():
    """syncTwoObjects: a two-node cluster elects a leader (both votes needed) and both objects
    apply the same additions, whichever node the client talks to."""
    with Cluster(2, seed=81, node_class=Counter) as c:
        w = Watched(c)
        w.wait_leader()
        for i in range(10):
            op = w.wait(c.put("counter", i, via=c.node_ids[i % 2]))
            assert op.outcome == OK
        assert w.run_until(lambda: converged(c), 5)
        assert _counts(c) == {"n1": 45, "n2": 45}


def test_sync_three_objects_leader_fail():
    """syncThreeObjectsLeaderFail: the leader dies after some additions; the two survivors elect a
    leader, keep counting, and the old leader, restarted, catches up to the same total."""
    with Cluster(3, seed=82, node_class=Counter) as c:
        w = Watched(c)
        leader = w.wait_leader()
        for i in range(5):
            w.must_put("counter", 1)
        c.crash(leader)
        assert w.wait_leader() != leader
        for i in range(5):
            w.must_put("counter", 10)
        assert w.run_until(lambda: converged(c), 5)
        assert set(_counts(c).values()) == {55}
        c.restart(leader)
        assert w.run_until(lambda: converged(c), 10)
        assert _counts(c) == {n: 55 for n in c.node_ids}


def test_many_actions_with_log_compaction():
    """manyActionsLogCompaction: 600 additions pipelined through every node while each node in turn
    compacts its log (forced) every 100 additions: all three end with the same total, compacted logs
    and the same applied state."""
    with Cluster(3, seed=83, node_class=Counter) as c:
        w = Watched(c, step=0.1)
        w.wait_leader()
        ops = []
        for i in range(600):
            ops.append(c.put("counter", 1, via=c.node_ids[i % 3]))
            if i % 100 == 99:
                c.force_snapshot(c.node_ids[(i // 100) % 3])
            if i % 10 == 9:
                w.run_for(0.05)
        assert w.run_until(lambda: not [op for op in ops if op.outcome == PENDING], 30)
        assert w.run_until(lambda: converged(c), 10)
        acked = sum(op.outcome == OK for op in ops)
        assert acked == 600
        assert _counts(c) == {n: 600 for n in c.node_ids}
        assert all(c.state(n).first_index > 1 for n in c.node_ids)


@two_leaders_after_restart_on_0_3_11
def test_journal_restart_and_replay_twice():
    """journalTest: counters survive the whole cluster being killed and restarted, twice; the second
    time part of the state is in a dump and the rest in the journal."""
    with Cluster(3, seed=84, node_class=Counter) as c:
        w = Watched(c)
        w.wait_leader()
        for i in range(10):
            w.must_put("counter", 1)
        for n in c.node_ids:
            c.crash(n)
        for n in c.node_ids:
            c.restart(n)
        w.must_put("counter", 100)
        assert w.run_until(lambda: converged(c), 10)
        assert set(_counts(c).values()) == {110}
        for n in c.node_ids:
            c.force_snapshot(n)
        w.run_for(1)
        for i in range(5):
            w.must_put("counter", 1000)
        for n in c.node_ids:
            c.crash(n)
        for n in c.node_ids:
            c.restart(n)
        w.must_put("counter", 0)
        assert w.run_until(lambda: converged(c), 10)
        assert _counts(c) == {n: 5110 for n in c.node_ids}
        assert all(c.incarnation(n) == 3 for n in c.node_ids)


def test_dump_to_file_is_enough_to_restore_a_node():
    """dumpToFile: after a forced compaction each node has a dump file in its directory; a node
    whose journal is then lost entirely restarts (alone) from the dump file only, with every value."""
    with Cluster(3, seed=85) as c:
        w = Watched(c)
        leader = w.wait_leader()
        for i in range(10):
            w.must_put(f"k{i}", i)
        assert w.run_until(lambda: converged(c), 5)
        assert not any((node_dir(c, n) / "dump").exists() for n in c.node_ids)
        for n in c.node_ids:
            c.force_snapshot(n)
        w.run_for(0.5)
        assert all((node_dir(c, n) / "dump").is_file() for n in c.node_ids)
        node = others(c, leader)[0]
        expected = data(c, node)
        c.crash(node)
        for f in node_dir(c, node).iterdir():
            if f.name.startswith("journal"):
                os.remove(f)
        assert [f.name for f in node_dir(c, node).iterdir()] == ["dump"]
        c.isolate_node(node)
        c.restart(node)
        w.run_for(0.5)
        assert data(c, node) == expected
        # Rejoining with no journal (so no term or vote) is beyond this story: keep it out.
        c.crash(node)


def test_readonly_nodes():
    """readOnlyNodes: two read-only nodes follow a 3-voter cluster; they apply every write, losing
    one of them changes nothing for the voters, and the other keeps applying."""
    with Cluster(3, seed=86, node_class=Counter) as c:
        w = Watched(c)
        w.wait_leader()
        r1, r2 = c.add_readonly_node(), c.add_readonly_node()
        for i in range(5):
            w.must_put("counter", 1)
        assert w.run_until(lambda: converged(c), 5)
        assert _counts(c) == {n: 5 for n in c.node_ids}
        c.crash(r1)
        for i in range(5):
            w.must_put("counter", 1)
        assert w.run_until(lambda: converged(c), 5)
        assert _counts(c) == {n: 10 for n in c.node_ids if n != r1}
        assert sorted(c.voter_ids) == ["n1", "n2", "n3"]


def test_add_nodes_one_at_a_time_then_remove_them():
    """addNodes/removeNodes: a one-node cluster grows to three voters, one change at a time (each
    waited for), counting all along; then shrinks back by removing the two newcomers, and the
    single remaining node still commits alone."""
    with Cluster(1, seed=87, node_class=Counter) as c:
        w = Watched(c)
        assert w.wait_leader() == "n1"
        w.must_put("counter", 1)
        added = []
        for _ in range(2):
            added.append(c.add_node())
            change = c.membership_changes[-1]
            assert w.run_until(lambda: change.outcome != PENDING, 10) and change.outcome == OK
            w.must_put("counter", 1)
        assert w.run_until(lambda: converged(c), 10)
        assert _counts(c) == {"n1": 3, "n2": 3, "n3": 3}
        assert all(c.state(n).membership == ("n1", "n2", "n3") for n in c.node_ids)
        for n in reversed(added):
            w.must_put("counter", 1)  # a leader that committed in its term accepts the change
            change = c.remove_node(n)
            assert w.run_until(lambda: change.outcome != PENDING, 10) and change.outcome == OK
        assert c.node_ids == ["n1"] and c.state("n1").membership == ("n1",)
        w.must_put("counter", 1)
        assert _counts(c) == {"n1": 6}
