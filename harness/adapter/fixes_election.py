"""Fixes for the findings in how pysyncobj elects a leader: votes and terms (FINDINGS.md 4, 15).

Each is a :class:`~harness.adapter.patching.Mutation` with a probe that is True only with the fix
in; :mod:`harness.adapter.fixes` collects them into ``KNOWN_FIXES``.  Apart from the fixes for the
log (:mod:`~harness.adapter.fixes_replication`) because they change who becomes leader, not what a
log holds.
"""
from __future__ import annotations

from typing import List

from harness.adapter.patching import ON_MESSAGE, Mutation
from harness.adapter.probes import CANDIDATE, LEADER, Probe, scratch_files, vote_request

__all__ = ["FIXES"]


def _probe_persist_term_and_vote(p: Probe) -> bool:
    with scratch_files("journal") as (journal,):
        with Probe(journal=journal) as before:
            before.receive("b", vote_request(3, 1, 0))  # term 3, and the vote for b goes out
            assert before.sent_to("b", "response_vote"), "the probe's vote was not granted"
        with Probe(journal=journal) as after:  # the restart
            return (after.obj.raftCurrentTerm, after.get("votedForNodeId")) == (3, "b")


def _probe_count_each_vote_once(p: Probe) -> bool:
    p.make(CANDIDATE, 2, "a")
    p.set("votesCount", 1)  # its own vote, as a candidacy starts
    vote = {"type": "response_vote", "term": 2}
    p.receive("b", vote)
    p.receive("b", vote)  # the same vote, delivered twice
    still_candidate = p.get("raftState") == CANDIDATE  # 2 voters of 5 are no majority
    p.receive("c", vote)
    return still_candidate and p.get("raftState") == LEADER


FIXES: List[Mutation] = [
    Mutation(
        name="persist_term_and_vote",
        title="Finding 4: a node keeps its term and vote across a restart",
        description=(
            "What pysyncobj 0.3.16 does, for 0.3.11 - 0.3.15: the term and the vote go into the "
            "journal's .meta file (under 0.3.16's keys, currentTerm and votedForNodeId) before any "
            "message leaves the node with them changed, written at once rather than by the one-second "
            "timer, and a restarted node reads them back (the term is at least its last entry's).  Raft "
            "only asks that they be stable before the node answers or asks anyone, so the store sits "
            "in front of the transport's send: one patched method, __init__, instead of every place "
            "that changes them.  Without a file journal nothing is stored, as in 0.3.16."),
        method="__init__",
        old=("    self.__transport.setOnUtilityMessageCallback('set_version', self._setCodeVersion)\n"
             "\n"
             "    self._methodToID = {}\n"),
        new=("    self.__transport.setOnUtilityMessageCallback('set_version', self._setCodeVersion)\n"
             "    # KNOWN FIX persist_term_and_vote (finding 4)\n"
             "    meta = getattr(self.__raftLog, '_FileJournal__meta', None)\n"
             "    if meta is not None:\n"
             "        self.__raftCurrentTerm = max(meta.get('currentTerm', 0), self.__raftLog[-1][2])\n"
             "        self.__votedForNodeId = meta.get('votedForNodeId')\n"
             "        transportSend = self.__transport.send\n"
             "\n"
             "        def send(node, message):\n"
             "            stored = self.__raftLog._FileJournal__meta\n"
             "            if (stored.get('currentTerm', 0), stored.get('votedForNodeId')) != \\\n"
             "                    (self.__raftCurrentTerm, self.__votedForNodeId):\n"
             "                stored['currentTerm'] = self.__raftCurrentTerm\n"
             "                stored['votedForNodeId'] = self.__votedForNodeId\n"
             "                self.__raftLog._FileJournal__metaStorer.storeMeta(stored)\n"
             "            return transportSend(node, message)\n"
             "\n"
             "        self.__transport.send = send\n"
             "\n"
             "    self._methodToID = {}\n"),
        probe=_probe_persist_term_and_vote,
    ),
    Mutation(
        name="count_each_vote_once",
        title="Finding 15: a candidate counts each voter once",
        description=(
            "A candidate counted response_vote messages, so a vote delivered twice (a network that "
            "duplicates messages) counted twice.  With the fix it remembers who voted for it in this "
            "candidacy (reset at the first vote, when the count is still its own vote) and counts a "
            "node once.  The set is bookkeeping, so it is added to ``__properies``: pysyncobj "
            "serializes every other attribute set after ``__init__`` into its snapshots."),
        method=ON_MESSAGE,
        old=("        if message['type'] == 'response_vote' and message['term'] == self.__raftCurrentTerm:\n"
             "            self.__votesCount += 1\n"),
        new=("        if message['type'] == 'response_vote' and message['term'] == self.__raftCurrentTerm:\n"
             "            # KNOWN FIX count_each_vote_once (finding 15): a vote is a node, not a message\n"
             "            if self.__votesCount == 1:  # the first vote of this candidacy, which began with its own\n"
             "                self.__votesFrom = set()\n"
             "                self.__properies.add('_SyncObj__votesFrom')\n"
             "            if node.id not in self.__votesFrom:\n"
             "                self.__votesFrom.add(node.id)\n"
             "                self.__votesCount += 1\n"),
        probe=_probe_count_each_vote_once,
        probe_peers=("b", "c", "d", "e"),
    ),
]
