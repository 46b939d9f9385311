"""Fixes for real pysyncobj bugs the harness found (FINDINGS.md), installable for a campaign.

A long fuzzing campaign keeps rediscovering the bug it finds most easily.
With the fixes in (``pytest properties/ --known-fixes``, ``raft-harness fuzz
--known-fixes``) it hunts for the next one.  Each entry of :data:`KNOWN_FIXES`
is a minimal correction of one finding, as a
:class:`~harness.adapter.patching.Mutation` of ``pysyncobj.syncobj.SyncObj``
with a probe that passes only while the fix is in.  Each is tied to a finding
whose regression test in ``tests/findings/`` still runs against unmodified
pysyncobj, so nothing is hidden: the fixes change what a campaign looks for,
not what the test suite reports.  Bugs we inject on purpose are in
:mod:`harness.adapter.injected_bugs`, never here.
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict

from harness.adapter.patching import ON_MESSAGE, Mutation
from harness.adapter.probes import FOLLOWER, Probe, snapshot_chunk, snapshot_data

__all__ = ["KNOWN_FIXES"]


# --------------------------------------------------------------------------------------------
# Probes: each is True when the *fixed* behaviour is there
# --------------------------------------------------------------------------------------------
def _probe_snapshot_chunk_keeps_commit(p: Probe) -> bool:
    p.append(2, 1)
    p.append(3, 1)
    p.make(FOLLOWER, 1)
    # The first chunk of a snapshot from a leader of term 2 that committed up to 3.
    p.receive("b", snapshot_chunk(2, 3, b"chunk", first=True, last=False))
    return p.obj.raftCommitIndex < 2  # 2@1 and 3@1 are this node's own, never committed entries


def _probe_stale_snapshot_keeps_log(p: Probe) -> bool:
    with tempfile.TemporaryDirectory(prefix="fix-probe-") as d:
        dump = os.path.join(d, "dump")
        node = Probe(dump=dump)
        try:
            for index in range(2, 6):
                node.append(index, 1)
            node.set("raftCommitIndex", 5)
            node.set("raftLastApplied", 5)
            node.make(FOLLOWER, 1)
            with open(dump, "wb") as f:
                f.write(b"the node's own dump")
            # A one-chunk snapshot ending at 3@1, an entry this node has (and committed, and applied).
            node.receive("b", snapshot_chunk(1, 5, snapshot_data(last=(3, 1), prev=(2, 1)), first=True, last=True))
            with open(dump, "rb") as f:
                own_dump_kept = f.read() == b"the node's own dump"
            return (node.obj.raftCommitIndex == 5 and node.obj.raftLastApplied == 5 and node.log[-1] == (5, 1)
                    and own_dump_kept)
        finally:
            node.close()


# --------------------------------------------------------------------------------------------
# The fixes
# --------------------------------------------------------------------------------------------
_LIST = [
    Mutation(
        name="snapshot_chunk_commit",
        title="Finding 3: a snapshot chunk does not advance the commit index",
        description=(
            "Until the last chunk of a snapshot has arrived, the receiver's log is still its own old "
            "log, so the leader's commit index says nothing about it: return after storing a chunk "
            "instead of raising the commit index over entries the receiver appended alone.  Regression "
            "test: tests/findings/test_snapshot_chunk_commits_stale_entries.py."),
        method=ON_MESSAGE,
        old=("                self.__loadDumpFile(clearJournal=True)\n"
             "                self.__sendNextNodeIdx(node, success=True)\n"),
        new=("                self.__loadDumpFile(clearJournal=True)\n"
             "                self.__sendNextNodeIdx(node, success=True)\n"
             "            else:\n"
             "                return  # KNOWN FIX snapshot_chunk_commit (finding 3)\n"),
        probe=_probe_snapshot_chunk_keeps_commit,
    ),
    Mutation(
        name="stale_snapshot_keeps_log",
        title="Finding 12: a follower ignores a snapshot of entries it already has",
        description=(
            "Raft's InstallSnapshot rule: when the snapshot's last entry is already in the follower's "
            "log with the same term (or compacted past), the follower keeps its log, its state machine "
            "and its own dump file (pysyncobj has written the received snapshot over it by then: it is "
            "put back, or else a restart would load the older snapshot and clear the journal), and "
            "answers next index = snapshot index + 1.  Regression test: "
            "tests/findings/test_stale_snapshot_rolls_back_follower.py."),
        method=ON_MESSAGE,
        old=("        elif serialized is not None:\n"
             "            if self.__serializer.setTransmissionData(serialized):\n"),
        new=("        elif serialized is not None:\n"
             "            # KNOWN FIX stale_snapshot_keeps_log (finding 12)\n"
             "            snapshotEnd = None\n"
             "            dumpFile = self.__conf.fullDumpFile\n"
             "            ownDump = None  # before the last chunk lands: False if there is no dump, else its bytes\n"
             "            if serialized[2] and dumpFile is not None:\n"
             "                ownDump = False\n"
             "                if os.path.isfile(dumpFile):\n"
             "                    with open(dumpFile, 'rb') as f:\n"
             "                        ownDump = f.read()\n"
             "            if self.__serializer.setTransmissionData(serialized):\n"
             "                snapshotEnd = self.__serializer.deserialize()[1]  # its last entry: (command, index, term)\n"
             "                ownEntries = self.__getEntries(snapshotEnd[1], 1)\n"
             "                if snapshotEnd[1] < self.__raftLog[0][1] or (ownEntries and ownEntries[0][2] == snapshotEnd[2]):\n"
             "                    if ownDump is False:\n"
             "                        os.remove(dumpFile)\n"
             "                    elif ownDump is not None:\n"
             "                        with open(dumpFile + '.kept', 'wb') as f:\n"
             "                            f.write(ownDump)\n"
             "                        os.replace(dumpFile + '.kept', dumpFile)\n"
             "                    self.__sendNextNodeIdx(node, nextNodeIdx=snapshotEnd[1] + 1, success=True)\n"
             "                    return\n"
             "            if snapshotEnd is not None:\n"),
        probe=_probe_stale_snapshot_keeps_log,
    ),
]

#: Fixes for findings the harness made, by name (never a injected bug's name).
KNOWN_FIXES: Dict[str, Mutation] = {m.name: m for m in _LIST}
