"""Finding: a delayed, stale append_entries makes a follower drop committed entries.

pysyncobj truncates the follower's log after ``prevLogIdx`` whenever the
message carries entries, even when those entries match what the follower
already has.  On a network that reorders messages (the Raft paper's model,
not TCP), an old append_entries that arrives late cuts committed and applied
entries off the log and the commit index goes backwards.  Raft only truncates
on a conflict (same index, different term).  See FINDINGS.md.

The steps are explicit Cluster calls; the test asserts the correct behaviour
and is a strict xfail on the releases that have the bug.
"""
import pytest

from harness import Cluster, ReorderFilter, SafetyChecker, SafetyViolation

pytestmark = pytest.mark.xfail(strict=True, raises=SafetyViolation,
                               reason="pysyncobj <= 0.3.17 truncates matching entries on a stale append_entries")


def test_stale_append_entries_never_moves_commit_index_back():
    checker = SafetyChecker()
    with Cluster(3, seed=0, network="unreliable") as c:
        leader = c.wait_leader()
        follower = [n for n in c.node_ids if n != leader][0]
        c.add_recv_filter(follower, ReorderFilter(1.0))
        for i in range(60):
            c.put("k", i, via=leader)
            c.run_for(0.05)
            checker.step(c.observe(), [], c.node_errors)
