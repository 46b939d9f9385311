"""Fixes for the findings in how pysyncobj replicates and commits its log (FINDINGS.md 2, 3, 7, 8, 12, 21).

They change how a follower handles ``append_entries`` (entries, snapshot chunks, the leader's
commit index), how a leader advances its commit index, or which replies it counts.  Each is a
:class:`~harness.adapter.patching.Mutation` with a probe that is True only with the fix in;
:mod:`harness.adapter.fixes` collects them into ``KNOWN_FIXES``.  They touch disjoint lines of
``__onMessageReceived``, so any of them can be installed on top of the others.  The snippets are
pysyncobj source, release knowledge, hence here in the adapter.
"""
from __future__ import annotations

from typing import List

from harness.adapter.patching import ON_MESSAGE, Mutation
from harness.adapter.probes import FOLLOWER, LEADER, Probe, append_entries, scratch_files, snapshot_chunk, snapshot_data

__all__ = ["FIXES"]


# --------------------------------------------------------------------------------------------
# Probes: each is True when the *fixed* behaviour is there
# --------------------------------------------------------------------------------------------
def _probe_truncate_on_conflict_only(p: Probe) -> bool:
    p.append(2, 1)
    p.append(3, 1)
    p.make(FOLLOWER, 1)
    p.receive("b", append_entries(1, (1, 0), [(2, 1)], 1))  # a late copy of the message that sent 2@1
    kept = p.log == [(1, 0), (2, 1), (3, 1)]  # 2@1 matches: nothing conflicts, nothing is cut
    p.receive("b", append_entries(2, (1, 0), [(2, 2)], 1))  # 2@2 conflicts with 2@1
    return kept and p.log == [(1, 0), (2, 2)]


def _probe_snapshot_chunk_keeps_commit(p: Probe) -> bool:
    p.append(2, 1)
    p.append(3, 1)
    p.make(FOLLOWER, 1)
    # The first chunk of a snapshot from a leader of term 2 that committed up to 3.
    p.receive("b", snapshot_chunk(2, 3, b"chunk", first=True, last=False))
    return p.obj.raftCommitIndex < 2  # 2@1 and 3@1 are this node's own, never committed entries


def _probe_commit_current_term_only(p: Probe) -> bool:
    p.append(2, 1)
    p.make(LEADER, 2)
    p.get("raftMatchIndex")[p.node("b")] = 2  # 2@1 is on a majority, but it is from an older term
    p.tick()
    return p.obj.raftCommitIndex == 1


def _probe_follower_commit_monotonic(p: Probe) -> bool:
    p.append(2, 1)
    p.append(3, 1)
    p.make(FOLLOWER, 1)
    p.set("raftCommitIndex", 3)
    p.receive("b", append_entries(1, (3, 1), [], 2))  # a leader that knows less: commit index 2
    return p.obj.raftCommitIndex == 3


def _probe_snapshot_offer_keeps_commit(p: Probe) -> bool:
    p.append(2, 1)
    p.append(3, 1)
    p.make(FOLLOWER, 1)
    # What a leader of term 2 (commit index 3) sends a follower that needs a snapshot while its
    # serializer is busy: Serializer.getTransmissionData returned None, so the message has no data.
    p.receive("b", {"type": "append_entries", "term": 2, "commit_index": 3, "serialized": None})
    return p.obj.raftCommitIndex < 2  # 2@1 and 3@1 are this node's own, never committed entries


def _probe_stale_snapshot_keeps_log(p: Probe) -> bool:
    with scratch_files("dump") as (dump,), Probe(dump=dump) as node:
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


def _probe_replies_of_current_term_only(p: Probe) -> bool:
    p.append(2, 1)
    p.append(3, 1)
    p.make(LEADER, 2)
    deliver = p.transport._onMessageReceived  # through the transport, as a real reply arrives
    reply = {"type": "next_node_idx", "next_node_idx": 4, "reset": False, "success": True}
    deliver(p.node("b"), dict(reply, term=1))  # b's answer to this node's leadership of term 1
    stale_ignored = p.get("raftMatchIndex")[p.node("b")] == 0
    deliver(p.node("b"), dict(reply, term=2))
    current_taken = p.get("raftMatchIndex")[p.node("b")] == 3
    p.make(FOLLOWER, 2)
    p.receive("b", append_entries(2, (3, 1), [], 1))
    answers = p.sent_to("b", "next_node_idx")
    return stale_ignored and current_taken and bool(answers) and all(m.get("term") == 2 for m in answers)


# --------------------------------------------------------------------------------------------
# Finding 2: the truncation block, as 0.3.16+ has it (it logs when it cuts applied entries) and before
# --------------------------------------------------------------------------------------------
def _truncation(logs_applied_cut: bool, fixed: bool) -> str:
    """pysyncobj's "delete what follows prevLogIdx, append the new entries" block (``fixed``: with the
    fix, which skips the entries the log already has and cuts only at the first conflicting one)."""
    m = " + matched" if fixed else ""
    log_cut = (f"                if prevLogIdx{m} + 1 <= self.__raftLastApplied:\n"
               "                    logger.critical(\n"
               "                        'truncating already-applied log entries from index %d '\n"
               "                        '(last applied: %d) - state machine may have diverged from '\n"
               f"                        'other cluster members', prevLogIdx{m} + 1, self.__raftLastApplied)\n"
               ) if logs_applied_cut else ""
    new_entries = "newEntries[matched:]" if fixed else "newEntries"
    head = ("            # KNOWN FIX truncate_on_conflict_only (finding 2): the entries this log already has\n"
            "            # (same index, same term) are skipped and only a conflicting one cuts the log; the\n"
            "            # leader's commit index then counts up to the last entry this message vouches for\n"
            "            matched = 0\n"
            "            while matched < len(newEntries) and matched + 1 < len(prevEntries) and \\\n"
            "                    prevEntries[matched + 1][2] == newEntries[matched][2]:\n"
            "                matched += 1\n"
            "            leaderCommitIndex = min(leaderCommitIndex, prevLogIdx + len(newEntries))\n"
            "            if len(prevEntries) > matched + 1 and matched < len(newEntries):\n"
            ) if fixed else "            if len(prevEntries) > 1:\n"
    return (head +
            "                # rollback cluster changes\n"
            "                if self.__conf.dynamicMembershipChange:\n"
            f"                    for entry in reversed(prevEntries[{'matched + ' if fixed else ''}1:]):\n"
            "                        clusterChangeRequest = self.__parseChangeClusterRequest(entry[0])\n"
            "                        if clusterChangeRequest is not None:\n"
            "                            self.__doChangeCluster(clusterChangeRequest, reverse=True)\n"
            "\n"
            + log_cut +
            f"                self.__deleteEntriesFrom(prevLogIdx{m} + 1)\n"
            f"            for entry in {new_entries}:\n"
            "                self.__raftLog.add(*entry)\n"
            "\n"
            "            # apply cluster changes\n"
            "            if self.__conf.dynamicMembershipChange:\n"
            f"                for entry in {new_entries}:\n")


# --------------------------------------------------------------------------------------------
# The fixes
# --------------------------------------------------------------------------------------------
FIXES: List[Mutation] = [
    Mutation(
        name="truncate_on_conflict_only",
        title="Finding 2: a follower truncates its log only where an entry conflicts",
        description=(
            "Raft's AppendEntries rule: an entry the follower already has (same index and term) is "
            "kept, the log is cut only at the first entry that conflicts (same index, other term), and "
            "only the entries after the ones it has are appended (and their membership changes "
            "applied).  A late, stale append_entries then changes nothing.  Because the follower no "
            "longer cuts everything after prevLogIdx, the leader's commit index is taken only up to "
            "the last entry the message carries (prevLogIdx + its entries), as Raft says, so entries "
            "past it that the leader has not vouched for are never committed."),
        method=ON_MESSAGE,
        old=_truncation(logs_applied_cut=True, fixed=False),
        new=_truncation(logs_applied_cut=True, fixed=True),
        variants=((_truncation(logs_applied_cut=False, fixed=False),  # 0.3.11 - 0.3.15
                   _truncation(logs_applied_cut=False, fixed=True)),),
        probe=_probe_truncate_on_conflict_only,
    ),
    Mutation(
        name="snapshot_chunk_commit",
        title="Finding 3: a snapshot chunk does not advance the commit index",
        description=(
            "Until the last chunk of a snapshot has arrived, the receiver's log is still its own old "
            "log, so the leader's commit index says nothing about it: return after storing a chunk "
            "instead of raising the commit index over entries the receiver appended alone."),
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
        name="snapshot_offer_commit",
        title="Finding 16: a snapshot message without data does not advance the commit index",
        description=(
            "A leader whose serializer is busy (a dump being written: the forked writer, or in-process "
            "until its next tick) sends a follower that needs a snapshot an append_entries with "
            "serialized=None: no prevLogIdx, no chunk.  It says nothing about the receiver's log, so "
            "return before the commit-index update instead of raising the commit index over entries the "
            "receiver appended alone (the case the snapshot_chunk_commit fix does not cover)."),
        method=ON_MESSAGE,
        old=("        newEntries = message.get('entries', [])\n"
             "        serialized = message.get('serialized', None)\n"
             "        self.__leaderCommitIndex = leaderCommitIndex = message['commit_index']\n"),
        new=("        newEntries = message.get('entries', [])\n"
             "        serialized = message.get('serialized', None)\n"
             "        self.__leaderCommitIndex = leaderCommitIndex = message['commit_index']\n"
             "        if serialized is None and 'prevLogIdx' not in message:\n"
             "            return  # KNOWN FIX snapshot_offer_commit (finding 16)\n"),
        probe=_probe_snapshot_offer_keeps_commit,
    ),
    Mutation(
        name="commit_current_term_only",
        title="Finding 7: a leader commits by counting replicas only entries of its own term",
        description=(
            "Raft's commitment rule (paper §5.4.2, Figure 8), ported from pysyncobj 0.3.12: the leader "
            "advances its commit index to the highest index a majority holds whose entry is of its "
            "current term; entries of earlier terms are committed only with such an entry after them.  "
            "0.3.11 counted replicas of any entry."),
        method="_onTick",
        old=("        while self.__raftCommitIndex < self.__getCurrentLogIndex():\n"
             "            nextCommitIndex = self.__raftCommitIndex + 1\n"
             "            count = 1\n"
             "            for node in self.__otherNodes:\n"
             "                if self.__raftMatchIndex[node] >= nextCommitIndex:\n"
             "                    count += 1\n"
             "            if count > (len(self.__otherNodes) + 1) / 2:\n"
             "                self.__raftCommitIndex = nextCommitIndex\n"
             "                self.__raftLog.setRaftCommitIndex(self.__raftCommitIndex)\n"
             "            else:\n"
             "                break\n"),
        new=("        # KNOWN FIX commit_current_term_only (finding 7): pysyncobj 0.3.12's commit loop\n"
             "        commitIdx = self.__raftCommitIndex\n"
             "        nextCommitIdx = self.__raftCommitIndex\n"
             "\n"
             "        while commitIdx < self.__getCurrentLogIndex():\n"
             "            commitIdx += 1\n"
             "            count = 1\n"
             "            for node in self.__otherNodes:\n"
             "                if self.__raftMatchIndex[node] >= commitIdx:\n"
             "                    count += 1\n"
             "            if count <= (len(self.__otherNodes) + 1) / 2:\n"
             "                break\n"
             "            entries = self.__getEntries(commitIdx, 1)\n"
             "            if not entries:\n"
             "                continue\n"
             "            commitTerm = entries[0][2]\n"
             "            if commitTerm != self.__raftCurrentTerm:\n"
             "                continue\n"
             "            nextCommitIdx = commitIdx\n"
             "\n"
             "        if self.__raftCommitIndex != nextCommitIdx:\n"
             "            self.__raftCommitIndex = nextCommitIdx\n"
             "            self.__raftLog.setRaftCommitIndex(self.__raftCommitIndex)\n"),
        probe=_probe_commit_current_term_only,
    ),
    Mutation(
        name="follower_commit_monotonic",
        title="Finding 8: a follower never lowers its commit index to the leader's",
        description=(
            "Ported from pysyncobj 0.3.12: a follower takes the leader's commit index only when it is "
            "higher than its own (``if leaderCommitIndex > raftCommitIndex``).  0.3.11 assigned "
            "min(leader commit, last index) on every append_entries, so a new leader that had not yet "
            "learnt the last commit index moved its followers' commit index back."),
        method=ON_MESSAGE,
        old=("\n"
             "        self.__raftCommitIndex = min(leaderCommitIndex, self.__getCurrentLogIndex())\n"
             "        self.__raftLog.setRaftCommitIndex(self.__raftCommitIndex)\n"),
        new=("\n"
             "        if leaderCommitIndex > self.__raftCommitIndex:  # KNOWN FIX follower_commit_monotonic (finding 8)\n"
             "            self.__raftCommitIndex = min(leaderCommitIndex, self.__getCurrentLogIndex())\n"
             "        self.__raftLog.setRaftCommitIndex(self.__raftCommitIndex)\n"),
        probe=_probe_follower_commit_monotonic,
    ),
    Mutation(
        name="stale_snapshot_keeps_log",
        title="Finding 12: a follower ignores a snapshot of entries it already has",
        description=(
            "Raft's InstallSnapshot rule: when the snapshot's last entry is already in the follower's "
            "log with the same term (or compacted past), the follower keeps its log, its state machine "
            "and its own dump file (pysyncobj has written the received snapshot over it by then: it is "
            "put back, or else a restart would load the older snapshot and clear the journal), and "
            "answers next index = snapshot index + 1."),
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
    Mutation(
        name="replies_of_current_term_only",
        title="Finding 21: a leader counts only the replies of its own term",
        description=(
            "A follower's ``next_node_idx`` reply carried no term, and a leader took every success reply "
            "it received, so one sent to the same node in an earlier leadership, slow on its connection, "
            "raised the follower's match index over entries of the new term it does not hold.  With the "
            "fix a reply carries the term of the append_entries it answers (the follower's current term, "
            "which that message set) and a node drops a reply of any other term, as Raft's AppendEntries "
            "results do.  Both ends live on the transport: ``__init__`` wraps its ``send`` and the "
            "message callback pysyncobj installs next, in closures (one patch changes one method, and "
            "the replies are sent from many places)."),
        method="__init__",
        old="    self.__transport.setOnNodeConnectedCallback(self.__onNodeConnected)\n",
        new=("    # KNOWN FIX replies_of_current_term_only (finding 21): a reply says which term it answers\n"
             "    sendMessage = self.__transport.send\n"
             "    setMessageCallback = self.__transport.setOnMessageReceivedCallback\n"
             "\n"
             "    def sendWithTerm(node, message):\n"
             "        if message.get('type') == 'next_node_idx':\n"
             "            message = dict(message, term=self.__raftCurrentTerm)\n"
             "        return sendMessage(node, message)\n"
             "\n"
             "    def setMessageCallbackOfCurrentTerm(callback):\n"
             "        def onMessageReceived(node, message):\n"
             "            if message.get('type') == 'next_node_idx' and message.get('term') != self.__raftCurrentTerm:\n"
             "                return\n"
             "            callback(node, message)\n"
             "        setMessageCallback(onMessageReceived)\n"
             "\n"
             "    self.__transport.send = sendWithTerm\n"
             "    self.__transport.setOnMessageReceivedCallback = setMessageCallbackOfCurrentTerm\n"
             "    self.__transport.setOnNodeConnectedCallback(self.__onNodeConnected)\n"),
        probe=_probe_replies_of_current_term_only,
    ),
]
