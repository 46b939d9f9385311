"""Learners: pysyncobj's read-only nodes (``SyncObj(None, cluster)``) replicate but never vote.

tests/test_cluster.py covers joining, never campaigning, and a restart; these
cover quorum, snapshots, forwarding and the node's own dump.
"""
from __future__ import annotations

from harness import Cluster
from harness.history import OK, PENDING

from ._support import Watched, converged, data, node_dir, others


def test_readonly_node_does_not_count_toward_the_commit_quorum():
    """With both followers down, the leader and a learner hold a new entry (2 of 4 nodes) but the
    learner is no voter: the entry stays uncommitted everywhere until a voting follower is back."""
    with Cluster(3, seed=61) as c:
        w = Watched(c)
        leader = w.wait_leader()
        w.must_put("k", 0)
        ro = c.add_readonly_node()
        assert w.run_until(lambda: c.state(ro).last_applied == c.state(leader).last_applied, 5)
        down = others(c, leader)
        down.remove(ro)
        for n in down:
            c.crash(n)
        target = c.state(leader).last_index + 1
        op = c.put("k", 1, via=leader)
        w.run_for(3)
        assert c.state(ro).last_index >= target  # the learner has it ...
        assert c.state(leader).commit_index < target and c.state(ro).commit_index < target  # ... uncounted
        assert op.outcome == PENDING
        c.restart(down[0])
        assert w.run_until(lambda: op.outcome != PENDING, 10) and op.outcome == OK
        assert w.run_until(lambda: c.node(ro).local_get("k") == 1, 5)


def test_readonly_node_added_after_compaction_starts_from_a_snapshot():
    """A learner joining a cluster whose logs were compacted cannot replay from index 1: it installs
    the leader's snapshot, then follows the log, and ends with the voters' exact state."""
    with Cluster(3, seed=62) as c:
        w = Watched(c)
        leader = w.wait_leader()
        for i in range(25):
            w.must_put(f"k{i}", i)
        for n in c.node_ids:
            c.force_snapshot(n)
        w.run_for(1)
        assert all(c.state(n).first_index > 1 for n in c.node_ids)
        ro = c.add_readonly_node()
        w.must_put("after", 1)
        assert w.run_until(lambda: converged(c), 10)
        s = c.state(ro)
        assert s.snapshots_installed >= 1 and s.first_index > 1
        assert data(c, ro) == data(c, leader)


def test_client_requests_through_a_readonly_node_are_forwarded_to_the_leader():
    """A learner cannot append, but it forwards a client's write and log read to the leader; both
    commit and the learner applies the write like everyone else."""
    with Cluster(3, seed=64) as c:
        w = Watched(c)
        w.wait_leader()
        w.must_put("k", 0)
        ro = c.add_readonly_node()
        assert w.run_until(lambda: c.state(ro).leader is not None, 5)
        write = w.wait(c.put("k", "via-learner", via=ro))
        read = w.wait(c.get("k", via=ro))
        assert write.outcome == OK and (read.outcome, read.value) == (OK, "via-learner")
        assert w.run_until(lambda: converged(c), 5)
        assert all(c.node(n).local_get("k") == "via-learner" for n in c.node_ids)


def test_readonly_node_restarts_from_its_own_dump():
    """A learner compacts its own log into its dump file (its cluster set has no self node), crashes
    and restarts cut off from everyone: it rebuilds its state from that dump and journal alone."""
    with Cluster(3, seed=65) as c:
        w = Watched(c)
        w.wait_leader()
        ro = c.add_readonly_node()
        for i in range(12):
            w.must_put(f"k{i}", i)
        assert w.run_until(lambda: converged(c), 5)
        c.force_snapshot(ro)
        assert w.run_until(lambda: c.state(ro).first_index > 1, 2)
        assert (node_dir(c, ro) / "dump").exists()
        w.run_for(1.5)  # the commit index reaches the journal's .meta file
        before = data(c, ro)
        c.crash(ro)
        c.isolate_node(ro)
        c.restart(ro)
        w.run_for(1)
        assert data(c, ro) == before and c.state(ro).first_index > 1
        assert not c.state(ro).voter and ro not in c.state(c.leader()).membership
        c.clear_all_filters()
        w.must_put("k0", "new")
        assert w.run_until(lambda: c.node(ro).local_get("k0") == "new", 5)
