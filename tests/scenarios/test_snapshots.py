"""Snapshots: compaction thresholds, chunked transfers that get interrupted, membership in a dump.

tests/test_cluster.py covers one follower catching up by snapshot after a
crash or an isolation; these are the harder transfers.
"""
from __future__ import annotations

from harness import Cluster
from harness.history import OK, PENDING

from helpers import Recorder

from ._support import Watched, converged, data, others

#: Small chunks so that a snapshot of a few dozen keys takes many append_entries to send.
CHUNKED = dict(logCompactionBatchSize=128)


def _fill(w: Watched, n: int, prefix: str = "k") -> None:
    for i in range(n):
        w.must_put(f"{prefix}{i}", f"value-{i}-" + "x" * 20)


def test_automatic_compaction_by_entry_count():
    """With logCompactionMinEntries=20 and no forced snapshot, 120 writes keep every node's log
    short (it compacts by itself, repeatedly) while all nodes apply the same 120 values."""
    with Cluster(3, seed=71, logCompactionMinEntries=20) as c:
        w = Watched(c)
        w.wait_leader()
        longest = 0
        for i in range(120):
            w.must_put(f"k{i}", i)
            longest = max(longest, max(c.state(n).last_index - c.state(n).first_index + 1 for n in c.node_ids))
        assert w.run_until(lambda: converged(c), 5)
        assert longest <= 30
        assert all(c.state(n).first_index > 90 for n in c.node_ids)
        assert all(data(c, n) == {f"k{i}": i for i in range(120)} for n in c.node_ids)


def _snapshot_transfer_under_way(c, w, leader):
    """Cut a follower off while the others write 40 values and compact, heal, and run until it has
    received three chunks of the many-chunk snapshot; returns (that follower, the chunk Recorder)."""
    lagger = others(c, leader)[0]
    c.isolate_node(lagger)
    _fill(w, 40)
    for n in others(c, lagger):
        c.force_snapshot(n)
    w.run_for(1)
    chunks = Recorder(lambda e: e.kind == "snapshot")
    c.clear_all_filters()
    c.add_recv_filter(lagger, chunks)
    assert w.run_until(lambda: len(chunks.seen) >= 3, 5)
    return lagger, chunks


def test_snapshot_transfer_cut_off_midway_restarts_after_heal():
    """A lagging follower starts receiving a many-chunk snapshot, is cut off again after the first
    chunks, and healed 2 s later: the transfer starts over, completes, and the follower ends with
    the leader's exact state (and no half-installed snapshot before that)."""
    with Cluster(3, seed=72, **CHUNKED) as c:
        w = Watched(c)
        leader = w.wait_leader()
        w.must_put("start", 0)
        lagger, chunks = _snapshot_transfer_under_way(c, w, leader)
        c.isolate_node(lagger)
        first_attempt = len(chunks.seen)
        assert c.state(lagger).snapshots_installed == 0
        w.run_for(2)
        c.clear_all_filters()
        c.add_recv_filter(lagger, chunks)
        assert w.run_until(lambda: converged(c), 15)
        assert c.state(lagger).snapshots_installed == 1
        assert len(chunks.seen) > 2 * first_attempt
        assert data(c, lagger) == data(c, leader)


def test_leader_crash_in_the_middle_of_a_snapshot_transfer():
    """The leader crashes while streaming a snapshot to a lagging follower; the new leader (whose log
    is compacted too) sends its own snapshot from the start, and the follower converges."""
    with Cluster(3, seed=73, **CHUNKED) as c:
        w = Watched(c)
        leader = w.wait_leader()
        w.must_put("start", 0)
        lagger, chunks = _snapshot_transfer_under_way(c, w, leader)
        c.crash(leader)
        assert c.state(lagger).snapshots_installed == 0
        new = w.wait_leader()
        assert new != leader
        w.must_put("after", 1)
        assert w.run_until(lambda: c.state(lagger).snapshots_installed == 1, 15)
        assert {e.src for _, e in chunks.seen} == {leader, new}
        assert w.run_until(lambda: converged(c), 10)
        assert data(c, lagger) == data(c, new)
        c.restart(leader)
        assert w.run_until(lambda: converged(c), 10)


def test_membership_travels_in_the_snapshot():
    """While a follower is cut off, a fourth voter joins and the logs are compacted past the
    membership entry: the follower learns the new configuration only from the snapshot, and then
    counts n4 in its membership (and can be part of a 3-of-4 quorum with it)."""
    with Cluster(3, seed=74) as c:
        w = Watched(c)
        leader = w.wait_leader()
        w.must_put("k", 0)
        lagger = others(c, leader)[0]
        c.isolate_node(lagger)
        new = c.add_node()
        change = c.membership_changes[-1]
        assert w.run_until(lambda: change.outcome != PENDING, 10) and change.outcome == OK
        _fill(w, 15)
        for n in others(c, lagger):
            c.force_snapshot(n)
        w.run_for(1)
        assert c.state(lagger).membership == ("n1", "n2", "n3")
        c.clear_all_filters()
        assert w.run_until(lambda: converged(c), 10)
        assert c.state(lagger).snapshots_installed >= 1
        assert c.state(lagger).membership == ("n1", "n2", "n3", "n4")
        c.crash(next(n for n in c.node_ids if n not in (leader, lagger, new)))
        w.must_put("k", "quorum with the newcomer")  # leader + lagger + n4: 3 of 4
        assert w.run_until(lambda: c.node(lagger).local_get("k") == "quorum with the newcomer", 5)
