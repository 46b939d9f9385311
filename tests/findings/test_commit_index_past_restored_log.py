"""Finding (0.3.11 – 0.3.15): a node restarted from an older dump keeps a stored commit index past its log.

A node's ``.meta`` file stores its commit index, its dump the state up to some
earlier index, and its journal the entries after the dump.  The three files
reach the disk independently: the journal is an mmap whose pages the kernel
(or an msync, ``FileJournal.flush``) writes back on their own, the ``.meta``
and dump files are renamed into place without fsync.  After a power cut the
journal can be newer than the dump and the ``.meta``: it starts past the
dump.  The restarted node then replaces the journal by the dump's last two
entries (rightly: the entries in between are gone) but keeps the commit index
from ``.meta``, so it claims to have committed entries it no longer has, and
counts whatever a leader sends at those indexes as committed the moment it
arrives.  0.3.16 added the clamp to ``__loadDumpFile`` (with the warning
"raftCommitIndex exceeds journal end after loading dump, likely due to unsynced
journal entries lost on crash").  See FINDINGS.md.
"""
import pytest

from harness import Cluster
from harness.adapter import observe as compat
from harness.adapter.observe import VERSION_INFO


@pytest.mark.xfail(VERSION_INFO < (0, 3, 16), strict=True, raises=AssertionError,
                   reason="pysyncobj < 0.3.16 keeps a stored commit index past the log it restored from its dump")
def test_a_node_restarted_from_an_older_dump_never_claims_a_commit_index_past_its_log():
    with Cluster(3, seed=0) as c:
        leader = c.wait_leader()
        node = next(n for n in c.node_ids if n != leader)
        for i in range(5):
            c.must_put("k", i)
        c.force_snapshot(node)
        c.run_for(0.5)
        old_dump = c.state(node).first_index + 1  # its dump ends here; the journal starts one before it
        for i in range(5):
            c.must_put("k", 10 + i)
        c.run_for(1.5)  # the .meta file has the new commit index
        c.storage.writeback(node)  # on disk: the dump up to old_dump, the .meta, the journal after the dump
        c.force_snapshot(node)
        c.run_for(0.5)  # a newer dump, and the journal truncated to start past old_dump
        compat.flush_journal(c.node(node))  # the journal's pages reach the disk; the new dump and .meta do not
        committed = c.state(node).commit_index
        assert committed > old_dump
        c.storage.enable("journal_unflushed_lost", node)
        c.crash(node)  # the power cut: the dump and .meta on disk are the older ones
        c.restart(node)
        claims = []

        def claims_past_its_log() -> bool:
            s = c.state(node)
            if s.commit_index > s.last_index:
                claims.append((s.commit_index, s.last_index))
            return False

        c.run_until(claims_past_its_log, 2)
        assert c.state(node).last_index >= committed, "the restarted node did not catch up"
        assert not claims, f"{node} claimed commit index {claims[0][0]} with its log ending at {claims[0][1]}"
