"""The fix for the finding in how a pysyncobj candidate counts its votes (FINDINGS.md 15).

A :class:`~harness.adapter.patching.Mutation` with a probe that is True only with the fix in;
:mod:`harness.adapter.fixes` collects it into ``KNOWN_FIXES``.  Apart from the fixes for the log
(:mod:`~harness.adapter.fixes_replication`) because it changes who becomes leader, not what a log holds.
"""
from __future__ import annotations

from typing import List

from harness.adapter.patching import ON_MESSAGE, Mutation
from harness.adapter.probes import CANDIDATE, LEADER, Probe

__all__ = ["FIXES"]


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
