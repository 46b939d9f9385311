"""Fixes for the findings in how a pysyncobj node restarts from its dump and journal (FINDINGS.md 5, 14, 23).

Two patch ``SyncObj.__loadDumpFile``, the method a restarted node runs on its first tick (and a
follower runs when a snapshot has arrived), at two disjoint places: which journal entries survive
the dump, and what the stored commit index may claim afterwards.  The third patches that first tick
itself: which voters a restarted node counts.  Each is a
:class:`~harness.adapter.patching.Mutation` with a probe that is True only with the fix in;
:mod:`harness.adapter.fixes` collects them into ``KNOWN_FIXES``.
"""
from __future__ import annotations

from typing import List, Tuple

from harness.adapter.patching import LOAD_DUMP, Mutation
from harness.adapter.probes import Probe, membership_change, scratch_files, snapshot_data

__all__ = ["FIXES"]


def _write_dump(path: str, last: Tuple[int, int], prev: Tuple[int, int],
                members: Tuple[str, ...] = ()) -> None:
    """A dump file as pysyncobj writes one, its log ending at ``last`` (index, term) after ``prev``, with
    the voters ``members``."""
    with open(path, "wb") as f:
        f.write(snapshot_data(last=last, prev=prev, members=members))


# --------------------------------------------------------------------------------------------
# Probes: each is True when the *fixed* behaviour is there
# --------------------------------------------------------------------------------------------
def _probe_dump_keeps_journal_tail(p: Probe) -> bool:
    with scratch_files("journal", "dump") as (journal, dump):
        with Probe(journal=journal, dump=dump) as before:
            for index in range(2, 6):
                before.append(index, 1)
        # the crash: the journal holds 1..5, the log was never truncated
        _write_dump(dump, last=(3, 1), prev=(2, 1))  # the dump written just before it, at 3@1
        with Probe(journal=journal, dump=dump) as after:
            after.tick()  # a restarted node loads its dump on its first tick
            return after.log == [(2, 1), (3, 1), (4, 1), (5, 1)]


def _probe_commit_index_clamped_to_log(p: Probe) -> bool:
    with scratch_files("dump") as (dump,), Probe(dump=dump) as node:
        node.set("raftCommitIndex", 9)  # as read from .meta; the journal holds only 1@0
        _write_dump(dump, last=(3, 1), prev=(2, 1))
        node.tick()  # loads the dump: the log becomes 2@1 3@1
        return node.log == [(2, 1), (3, 1)] and node.obj.raftCommitIndex == 3


def _probe_membership_of_the_log(p: Probe) -> bool:
    """A node whose log holds "add d" past its commit index counts d after a restart, with and
    without a dump to start from."""
    with scratch_files("journal", "dump") as (journal, dump):
        with Probe(journal=journal, dynamic=True) as before:
            before.append(2, 1)
            before.append(3, 1, membership_change("add", "d"))  # appended; its commit never reached it
        with Probe(journal=journal, dynamic=True) as restarted:  # started with the voters it began with
            restarted.tick()
            from_journal = restarted.members == ["b", "c", "d"]
        # compacted through 2@1 when the voters were a, b, e (c was replaced before)
        _write_dump(dump, last=(2, 1), prev=(1, 0), members=("a", "b", "e"))
        with Probe(journal=journal, dump=dump, dynamic=True) as restarted:
            restarted.tick()  # loads the dump: its voters replace the ones it was started with
            return from_journal and restarted.members == ["b", "d", "e"]


# --------------------------------------------------------------------------------------------
# The fixes
# --------------------------------------------------------------------------------------------
FIXES: List[Mutation] = [
    Mutation(
        name="dump_keeps_journal_tail",
        title="Finding 5: a restarted node keeps the journal entries that follow its dump",
        description=(
            "Compaction writes the dump on one tick and truncates the log on the next.  A node "
            "restarted in between finds a journal that does not start at the dump's last two entries "
            "and pysyncobj clears all of it, entries past the dump point included (ones it "
            "acknowledged).  With the fix, a journal that holds the dump's last two entries at their "
            "indexes loses only what precedes them, which is the truncation the crash prevented; any "
            "other journal is still replaced by the dump's two entries."),
        method=LOAD_DUMP,
        old=("        if clearJournal or \\\n"
             "                len(self.__raftLog) < 2 or \\\n"
             "                self.__raftLog[0] != data[2] or \\\n"
             "                self.__raftLog[1] != data[1]:\n"),
        new=("        # KNOWN FIX dump_keeps_journal_tail (finding 5): the journal agrees with the dump, the\n"
             "        # log was only not truncated yet: truncate it now and keep what follows the dump\n"
             "        if not clearJournal and self.__raftLog[0][1] < data[2][1] and \\\n"
             "                self.__getEntries(data[2][1], 2) == [data[2], data[1]]:\n"
             "            self.__deleteEntriesTo(data[2][1])\n"
             "        elif clearJournal or \\\n"
             "                len(self.__raftLog) < 2 or \\\n"
             "                self.__raftLog[0] != data[2] or \\\n"
             "                self.__raftLog[1] != data[1]:\n"),
        probe=_probe_dump_keeps_journal_tail,
    ),
    Mutation(
        name="commit_index_clamped_to_log",
        title="Finding 14: a node restarted from its dump never claims a commit index past its log",
        description=(
            "Ported from pysyncobj 0.3.16: after loading a dump, a commit index (read from the "
            "journal's .meta file) past the end of the log is lowered to the log's end and stored.  "
            "Before 0.3.16 a node whose journal was replaced by an older dump's two entries kept the "
            "stored commit index, claiming entries it no longer has and counting whatever arrives at "
            "those indexes as committed."),
        method=LOAD_DUMP,
        old=("        self.__raftLastApplied = data[1][1]\n"
             "\n"
             "        if self.__conf.dynamicMembershipChange:\n"),
        new=("        self.__raftLastApplied = data[1][1]\n"
             "\n"
             "        if self.__raftCommitIndex > self.__getCurrentLogIndex():  # KNOWN FIX commit_index_clamped_to_log (finding 14)\n"
             "            self.__raftCommitIndex = self.__getCurrentLogIndex()\n"
             "            self.__raftLog.setRaftCommitIndex(self.__raftCommitIndex)\n"
             "\n"
             "        if self.__conf.dynamicMembershipChange:\n"),
        probe=_probe_commit_index_clamped_to_log,
    ),
    Mutation(
        name="membership_of_the_log_on_restart",
        title="Finding 23: a restarted node counts the voters of its log's latest membership entry",
        description=(
            "pysyncobj applies a membership entry to a running node's voters as soon as it is appended "
            "(Raft's rule: a node uses the latest configuration in its log, committed or not).  A "
            "restarted node rebuilds its voters from the peers it was started with, or its dump's, and "
            "then only from entries as they are applied, so a change its log holds past its stored "
            "commit index is missing until that index is committed again: it counts votes and "
            "replicas against an older configuration.  With the fix, the first tick (where the dump "
            "is loaded) applies the membership entries past the last applied index, as appending them "
            "did before the crash; applying them again on commit then does what it does in a node that "
            "never crashed."),
        method="_onTick",
        old=("        self.__needLoadDumpFile = False\n"),
        new=("        self.__needLoadDumpFile = False\n"
             "        # KNOWN FIX membership_of_the_log_on_restart (finding 23)\n"
             "        if self.__conf.dynamicMembershipChange:\n"
             "            for entry in self.__getEntries(self.__raftLastApplied + 1):\n"
             "                request = self.__parseChangeClusterRequest(entry[0])\n"
             "                if request is not None:\n"
             "                    self.__doChangeCluster(request)\n"),
        probe=_probe_membership_of_the_log,
    ),
]
