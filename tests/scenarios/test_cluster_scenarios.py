"""Partition stories after TiKV's raftstore tests: majority/minority, splits, one-way faults, heal.

tests/test_cluster.py already covers the isolated leader, the isolated
follower, a 2|3 split healing, and one follower catching up by snapshot;
these are the other shapes.
"""
from __future__ import annotations

from harness import Cluster, PredicateFilter
from harness.history import OK, PENDING
from harness.state import FOLLOWER, LEADER

from ._support import Watched, commit_index_regresses_on_0_3_11, converged, data, others, watch_roles


def test_leader_in_a_minority_steps_down_after_leader_fallback_timeout():
    """pysyncobj's check-quorum: a leader cut into a minority (with one follower that still answers)
    keeps its role for leaderFallbackTimeout, then becomes a follower although nothing told it of a
    higher term; meanwhile the majority elected its own leader, so for a while two leaders of
    different terms coexist, and only the majority's commits."""
    with Cluster(5, seed=21, leaderFallbackTimeout=4.0) as c:
        w = Watched(c)
        old = w.wait_leader()
        w.must_put("k", 0)
        buddy = others(c, old)[0]
        majority = [n for n in c.node_ids if n not in (old, buddy)]
        c.partition([old, buddy], majority)
        term = c.state(old).term
        assert w.run_until(lambda: any(c.state(n).role == LEADER for n in majority), 5)
        assert c.state(old).role == LEADER and c.state(old).term == term  # two leaders, two terms
        stuck = c.put("k", "minority", via=old)
        w.must_put("k", "majority")
        assert w.run_until(lambda: c.state(old).role != LEADER, 5)
        s = c.state(old)
        assert s.role == FOLLOWER and s.term == term  # stepped down on its own, same term
        assert stuck.outcome == PENDING
        c.clear_all_filters()
        assert w.run_until(lambda: converged(c), 10)
        assert stuck.outcome != OK
        assert c.must_get("k") == "majority"


@commit_index_regresses_on_0_3_11
def test_three_way_split_has_no_majority_and_commits_nothing():
    """5 nodes split {2}|{2}|{1}: no group can elect a leader or commit (the old leader falls back),
    no node's commit index passes what was committed before the split; after the heal one leader is elected and the
    cluster commits again."""
    with Cluster(5, seed=22, leaderFallbackTimeout=2.0) as c:
        w = Watched(c)
        leader = w.wait_leader()
        w.must_put("k", 0)
        a, b = [leader, others(c, leader)[0]], others(c, leader)[1:3]
        lone = others(c, leader)[3]
        c.partition(a, b)
        c.isolate_node(lone)
        ceiling = max(c.state(n).commit_index for n in c.node_ids)
        attempts = [c.put("k", i, via=n) for i, n in enumerate(a + b)]
        roles = watch_roles(c, c.node_ids, 8)
        w.check()
        assert all(c.state(n).commit_index <= ceiling for n in c.node_ids)
        assert c.leader() is None
        new_leaders = [(n, t) for n in c.node_ids for role, t in roles[n] if role == LEADER and n != leader]
        assert new_leaders == []
        assert all(op.outcome != OK for op in attempts)
        c.clear_all_filters()
        w.must_put("k", "healed")
        assert w.run_until(lambda: converged(c), 10)
        assert c.must_get("k") == "healed"


def test_minority_with_the_old_leader_catches_up_by_snapshot_after_compaction():
    """The old leader and one follower are cut off (no writes through them) while the majority
    commits 40 writes and compacts its logs past everything the minority has; after the heal both
    minority nodes install a snapshot, step into the new term and hold the majority's exact state."""
    with Cluster(5, seed=24) as c:
        w = Watched(c)
        old = w.wait_leader()
        w.must_put("k0", 0)
        minority = [old, others(c, old)[0]]
        majority = [n for n in c.node_ids if n not in minority]
        c.partition(minority, majority)
        # Write only once the majority has its own leader: a write appended by the cut-off leader
        # would hit FINDINGS.md #3 (a snapshot makes the deposed leader commit its own entries).
        assert w.run_until(lambda: any(c.state(n).role == LEADER for n in majority), 10)
        for i in range(1, 41):
            w.must_put(f"k{i}", i)
        new = c.leader()
        assert new in majority
        for n in majority:
            c.force_snapshot(n)
        w.run_for(1)
        horizon = min(c.state(n).first_index for n in majority)
        assert all(c.state(n).last_index < horizon for n in minority)
        c.clear_all_filters()
        assert w.run_until(lambda: converged(c), 15)
        for n in minority:
            s = c.state(n)
            assert s.snapshots_installed >= 1 and s.first_index >= horizon
            assert s.role == FOLLOWER and s.term == c.state(new).term
            assert data(c, n) == data(c, new)
        assert c.must_get("k40") == 40


def test_leader_that_can_send_but_not_receive_is_replaced():
    """One-way fault (unreliable network, so the link itself stays up): the leader's heartbeats still
    reach the followers, but nothing reaches the leader. The followers keep hearing a leader and do
    not campaign; the leader can commit nothing, falls back after leaderFallbackTimeout, goes
    silent, and the followers then elect a new leader that commits. The deaf node never leads again
    while deaf. The write it took was replicated (only the acks were lost), so the new leader
    commits it with its no-op and the deaf node acknowledges it after the heal, at the same slot."""
    with Cluster(3, seed=25, network="unreliable", leaderFallbackTimeout=3.0) as c:
        w = Watched(c)
        old = w.wait_leader()
        w.must_put("k", 0)
        term = c.state(old).term
        c.add_recv_filter(old, PredicateFilter(lambda e: False))
        stuck = c.put("k", "deaf", via=old)
        w.run_for(2.5)
        assert c.leader() == old and all(c.state(n).term == term for n in c.node_ids)  # nobody campaigned
        assert stuck.outcome == PENDING
        assert w.run_until(lambda: c.leader() not in (None, old), 10)
        new = c.leader()
        w.must_put("k", "new")
        roles = watch_roles(c, [old], 3)
        assert all(role != LEADER for role, _ in roles[old])
        assert c.state(new).term > term
        c.clear_all_filters()
        assert w.run_until(lambda: converged(c), 10)
        assert w.run_until(lambda: stuck.outcome != PENDING, 5)
        assert stuck.outcome == OK and stuck.term == term
        assert c.must_get("k") == "new"
