"""Finding: a deposed leader acknowledges its uncommitted writes when a snapshot reaches it.

When a node receives an ``append_entries`` that carries a snapshot chunk, it
stores the chunk and then, like for any append_entries, raises its commit
index to ``min(leader commit index, its own last log index)``.  The first
chunk of a transfer is not the last one, so the node's log is still its own
old, divergent log: a deposed leader thereby commits the entries it appended
alone in its old term, applies them and reports SUCCESS to their clients,
while the cluster committed different entries at those indexes.

Found by ``FifoRaft`` (pysyncobj's own TCP contract). See FINDINGS.md.
"""
import pytest

from harness import Cluster, SafetyChecker, SafetyViolation


@pytest.mark.xfail(strict=True, raises=SafetyViolation,
                   reason="pysyncobj 0.3.11-0.3.17 advance the commit index on snapshot chunks")
def test_snapshot_transfer_never_commits_the_receivers_own_stale_entries():
    _deposed_leader_receives_a_snapshot()


def _deposed_leader_receives_a_snapshot() -> None:
    checker, cursor = SafetyChecker(), 0
    with Cluster(3, seed=0) as c:
        old = c.wait_leader()
        for i in range(3):
            c.must_put("k", i)
        c.isolate_node(old)
        for i in range(5):
            c.put("k", 100 + i, via=old)  # appended by the soon-deposed leader alone
        c.run_for(3)
        assert c.wait_leader() != old
        for i in range(10):
            c.must_put("k", 200 + i)
        c.force_snapshot(c.leader())  # the new leader's log now starts past the old leader's
        c.run_for(1)
        c.clear_all_filters()
        for _ in range(100):
            c.run_for(0.05)
            completed, cursor = c.history.completed_since(cursor)
            checker.step(c.observe(), completed, c.node_errors)
