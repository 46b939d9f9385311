"""Finding: a candidate counts a duplicated vote twice and wins an election without a majority.

A candidate counts ``response_vote`` messages (``__votesCount += 1``), not the
nodes that voted for it.  On a network that duplicates messages (the Raft
paper's model, not TCP) one vote delivered twice counts as two: in a cluster
of five, a candidate with one real vote besides its own is elected, although
the three nodes it never heard from hold a committed entry it lacks
(``leader_completeness``).  Raft counts each voter once per term.  Found by
``UnreliableRaft`` fuzzing 0.3.17 with the known fixes installed.  See
FINDINGS.md.
"""
import pytest

from harness import Cluster, DuplicateFilter, SafetyChecker, SafetyViolation


@pytest.mark.xfail(strict=True, raises=SafetyViolation,
                   reason="pysyncobj 0.3.11-0.3.17 count vote messages, not voters")
def test_a_duplicated_vote_counts_once():
    checker, cursor = SafetyChecker(), 0
    with Cluster(5, seed=0, network="unreliable") as c:
        leader = c.wait_leader()
        a, b, lagging, other = [n for n in c.node_ids if n != leader]
        c.partition([leader, a, b], [lagging, other])
        c.must_put("k", 1)  # committed by three of five; the other two never see it
        for n in (lagging, other):
            c.add_send_filter(n, DuplicateFilter(1.0))  # every vote one of them grants arrives twice
        for _ in range(40):
            c.run_for(0.25)
            completed, cursor = c.history.completed_since(cursor)
            checker.step(c.observe(), completed, c.node_errors)
