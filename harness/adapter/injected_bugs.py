"""Injected bugs: classic Raft bugs we inject into pysyncobj to show that the checker catches them.

A safety harness that never fails proves nothing.  Each entry of
:data:`INJECTED_BUGS` is a :class:`~harness.adapter.patching.Mutation` that
breaks one Raft rule in ``pysyncobj.syncobj.SyncObj`` (votedFor ignored, the
election restriction skipped, a commit quorum one short, ...), with a probe
that passes only while the bug is in.  ``tests/test_injected_bugs.py`` runs the
fuzzing state machine on each and asserts that the expected invariant fails.
These are *our* bugs; repairs of bugs pysyncobj really has are in
:mod:`harness.adapter.fixes`.  The snippets are pysyncobj source, so they live
in the adapter next to the other release-specific code.
"""
from __future__ import annotations

from typing import Dict

from harness.adapter.patching import ON_MESSAGE, Mutation
from harness.adapter.probes import CANDIDATE, FOLLOWER, LEADER, Probe, append_entries, scratch_files, vote_request

__all__ = ["INJECTED_BUGS"]


# --------------------------------------------------------------------------------------------
# Probes: each is True when the bug is there
# --------------------------------------------------------------------------------------------
def _probe_vote_twice(p: Probe) -> bool:
    p.receive("b", vote_request(1, 1, 0))
    p.receive("c", vote_request(1, 1, 0))
    # Correct: the vote of term 1 went to b; c gets nothing.
    return bool(p.sent_to("c", "response_vote"))


def _probe_vote_stale_log(p: Probe) -> bool:
    p.append(2, 1)
    p.make(FOLLOWER, 1)
    p.receive("b", vote_request(2, 1, 0))  # b's log ends at 1@0, ours at 2@1
    return bool(p.sent_to("b", "response_vote"))


def _probe_commit_old_term(p: Probe) -> bool:
    p.append(2, 1)
    p.make(LEADER, 2)
    p.get("raftMatchIndex")[p.node("b")] = 2  # 2@1 is on a majority, but it is from an older term
    p.tick()
    return p.obj.raftCommitIndex == 2


def _probe_no_truncate(p: Probe) -> bool:
    p.append(2, 1)
    p.append(3, 1)
    p.make(FOLLOWER, 1)
    p.receive("b", append_entries(2, (1, 0), [(2, 2)], 1))
    # Correct: 2@1 and 3@1 conflict with 2@2 and are replaced, the log ends at 2@2.
    return (2, 1) in p.log


def _probe_commit_past_leader(p: Probe) -> bool:
    p.make(FOLLOWER, 1)
    p.receive("b", append_entries(1, (1, 0), [(2, 1), (3, 1)], 1))
    return p.obj.raftCommitIndex == 3  # correct: min(leader commit 1, last index 3) = 1


def _probe_commit_quorum_off_by_one(p: Probe) -> bool:
    p.append(2, 1)
    p.make(LEADER, 1)  # no follower has 2@1 yet
    p.tick()
    return p.obj.raftCommitIndex == 2


def _election_probe(p: Probe, vote_term: int) -> bool:
    p.receive("b", {"type": "response_vote", "term": vote_term})
    return p.get("raftState") == LEADER


def _probe_election_quorum_off_by_one(p: Probe) -> bool:
    p.make(CANDIDATE, 1, "a")
    p.set("votesCount", 1)
    return _election_probe(p, 1)  # 2 votes of 4 are not a majority


def _probe_candidate_gives_vote(p: Probe) -> bool:
    p.make(CANDIDATE, 1, "a")  # campaigning in term 1, with its own vote
    p.receive("b", vote_request(1, 1, 0))  # a rival candidate of the same term
    return bool(p.sent_to("b", "response_vote"))


def _probe_count_stale_votes(p: Probe) -> bool:
    p.make(CANDIDATE, 2, "a")
    p.set("votesCount", 1)
    return _election_probe(p, 1)  # a vote granted in term 1 says nothing about term 2


def _probe_leader_ignores_higher_term(p: Probe) -> bool:
    p.make(LEADER, 1, "a")
    p.receive("b", vote_request(2, 1, 0))
    return p.get("raftState") == LEADER and p.obj.raftCurrentTerm == 2


def _probe_accept_stale_leader(p: Probe) -> bool:
    p.append(2, 3)
    p.make(FOLLOWER, 3)
    p.receive("b", append_entries(2, (1, 0), [(2, 2)], 1))  # a deposed leader of term 2
    return (2, 2) in p.log


def _probe_restart_at_term_zero(p: Probe) -> bool:
    with scratch_files("journal") as (journal,):
        with Probe(journal=journal) as before:
            before.receive("b", vote_request(3, 1, 0))  # term 3, vote for b: stored in the journal's meta
        with Probe(journal=journal) as after:  # the restart
            return after.obj.raftCurrentTerm != 3 or after.get("votedForNodeId") != "b"


def _probe_forget_term_and_vote(p: Probe) -> bool:
    p.receive("b", vote_request(1, 1, 0))
    journal = p.get("raftLog")
    return journal.getCurrentTerm() != 1 or journal.getVotedForNodeId() != "b"


# --------------------------------------------------------------------------------------------
# The injected bugs
# --------------------------------------------------------------------------------------------
_LIST = [
    Mutation(
        name="vote_twice",
        title="A node grants more than one vote per term (votedFor ignored)",
        description=(
            "RequestVote handling forgets to check votedFor: any candidate of the current (or a newer) "
            "term with an up-to-date log gets the vote, even after the node voted for someone else, or "
            "for itself as a candidate.  Two candidates can both collect a majority in one term.  "
            "Expected symptom: vote_safety (the second vote, when it is granted), then election_safety (two "
            "leaders in one term)."),
        method=ON_MESSAGE,
        old=("                if self.__votedForNodeId is not None:\n"
             "                    return\n"),
        new="                pass  # MUTATION vote_twice: votedFor is not checked\n",
        probe=_probe_vote_twice,
    ),
    Mutation(
        name="candidate_gives_vote",
        title="A candidate also votes for a rival candidate of its own term",
        description=(
            "RequestVote handling treats a vote for itself as no vote: a candidate that already voted for "
            "itself grants a rival of the same term its vote too, and goes on collecting votes for itself.  "
            "Each of the two can then reach a majority (in 3 nodes: one with the rival's vote, the other with "
            "the third node's), so two leaders of one term coexist until the first append_entries of one "
            "reaches the other, usually a few milliseconds: both append only their no-op, so the logs rarely "
            "diverge.  Expected symptom: vote_safety (seen when granted), election_safety (the second "
            "leader, seen when elected); a step-end sample almost never sees either."),
        method=ON_MESSAGE,
        old=("                if self.__votedForNodeId is not None:\n"
             "                    return\n"),
        new=("                if self.__votedForNodeId is not None and self.__votedForNodeId != self.__selfNode.id:"
             "  # MUTATION candidate_gives_vote\n"
             "                    return\n"),
        probe=_probe_candidate_gives_vote,
    ),
    Mutation(
        name="vote_stale_log",
        title="A node votes for a candidate whose log is behind its own",
        description=(
            "RequestVote handling skips the election restriction (paper §5.4.1): the candidate's last "
            "log term/index are not compared with the voter's.  A node missing committed entries can "
            "win and overwrite them.  Expected symptom: leader_completeness (a new leader lacks a "
            "committed entry), then state_machine_safety / log_matching."),
        method=ON_MESSAGE,
        old=("                if lastLogTerm < self.__getCurrentLogTerm():\n"
             "                    return\n"
             "                if lastLogTerm == self.__getCurrentLogTerm() and \\\n"
             "                        lastLogIdx < self.__getCurrentLogIndex():\n"
             "                    return\n"),
        new="                pass  # MUTATION vote_stale_log: no up-to-date check\n",
        probe=_probe_vote_stale_log,
    ),
    Mutation(
        name="commit_old_term",
        title="A leader commits entries of earlier terms by counting replicas (Figure 8)",
        description=(
            "The leader's commit rule drops the 'only entries of the current term are committed by "
            "counting replicas' restriction (paper §5.4.2, Figure 8).  An entry of an older term on a "
            "majority can still be overwritten by a leader elected with a log of a newer term.  "
            "pysyncobj 0.3.11 shipped without the check (so this mutation does not apply "
            "there).  pysyncobj masks it largely on its own: a new leader appends a no-op and sends it "
            "in the same append_entries as the older entries, so they usually reach a majority "
            "together.  Expected symptom: leader_commit_rule (the stream checker sees the premature commit), "
            "later state_machine_safety / durability / leader_completeness."),
        method="_onTick",
        old=("            if commitTerm != self.__raftCurrentTerm:\n"
             "                continue\n"),
        new="            pass  # MUTATION commit_old_term: older-term entries committed by counting\n",
        probe=_probe_commit_old_term,
    ),
    Mutation(
        name="no_truncate",
        title="A follower keeps a conflicting log suffix instead of truncating it",
        description=(
            "AppendEntries handling does not delete the follower's entries after prevLogIdx; it only "
            "appends the leader's entries past its own last index and skips those at indexes it "
            "already has, whatever their term (the log stays index-contiguous so the node keeps "
            "running).  The follower acknowledges, so the leader counts a replica the follower does not "
            "hold.  Expected symptom: log_matching (same index and term, different prefix), then "
            "state_machine_safety."),
        method=ON_MESSAGE,
        old=("                self.__deleteEntriesFrom(prevLogIdx + 1)\n"
             "            for entry in newEntries:\n"
             "                self.__raftLog.add(*entry)\n"),
        new=("                pass  # MUTATION no_truncate: the conflicting suffix stays\n"
             "            for entry in newEntries:\n"
             "                if entry[1] > self.__getCurrentLogIndex():\n"
             "                    self.__raftLog.add(*entry)\n"),
        # On top of finding 2's fix (truncate_on_conflict_only), which a --known-fixes campaign installs first.
        variants=(("                self.__deleteEntriesFrom(prevLogIdx + matched + 1)\n"
                   "            for entry in newEntries[matched:]:\n"
                   "                self.__raftLog.add(*entry)\n",
                   "                pass  # MUTATION no_truncate: the conflicting suffix stays\n"
                   "            for entry in newEntries[matched:]:\n"
                   "                if entry[1] > self.__getCurrentLogIndex():\n"
                   "                    self.__raftLog.add(*entry)\n"),),
        probe=_probe_no_truncate,
    ),
    Mutation(
        name="commit_past_leader",
        title="A follower commits up to its last log index, past the leader's commit index",
        description=(
            "On every append_entries the follower sets its commit index to its last log index instead "
            "of min(leaderCommit, last index), i.e. it treats entries as committed on receipt: it "
            "applies entries no majority holds, which a later leader may replace.  Expected symptom: "
            "state_machine_safety (an index committed with two different entries, or a commit index "
            "going back)."),
        method=ON_MESSAGE,
        old=("        if leaderCommitIndex > self.__raftCommitIndex:\n"
             "            self.__raftCommitIndex = min(leaderCommitIndex, self.__getCurrentLogIndex())\n"),
        new=("        if self.__getCurrentLogIndex() > self.__raftCommitIndex:  # MUTATION commit_past_leader\n"
             "            self.__raftCommitIndex = self.__getCurrentLogIndex()\n"),
        variants=((  # pysyncobj 0.3.11: no guard, the commit index is assigned on every append_entries
            "self.__raftCommitIndex = min(leaderCommitIndex, self.__getCurrentLogIndex())",
            "self.__raftCommitIndex = self.__getCurrentLogIndex()  # MUTATION commit_past_leader",
        ),),
        probe=_probe_commit_past_leader,
    ),
    Mutation(
        name="commit_quorum_off_by_one",
        title="A leader commits with one replica short of a majority",
        description=(
            "The leader's commit rule tests count > (n+1)/2 - 1 instead of count > (n+1)/2: in a "
            "3-node cluster the leader commits alone, in a 5-node cluster with 2 of 5.  A minority "
            "side's leader then commits entries a majority side overwrites.  Expected symptom: "
            "state_machine_safety / durability."),
        method="_onTick",
        old=("                if self.__raftMatchIndex[node] >= commitIdx:\n"
             "                    count += 1\n"
             "            if count <= (len(self.__otherNodes) + 1) / 2:\n"),
        new=("                if self.__raftMatchIndex[node] >= commitIdx:\n"
             "                    count += 1\n"
             "            if count <= (len(self.__otherNodes) + 1) / 2 - 1:  # MUTATION commit_quorum_off_by_one\n"),
        variants=((  # pysyncobj 0.3.11
            "            if count > (len(self.__otherNodes) + 1) / 2:\n",
            "            if count > (len(self.__otherNodes) + 1) / 2 - 1:  # MUTATION commit_quorum_off_by_one\n",
        ),),
        probe=_probe_commit_quorum_off_by_one,
    ),
    Mutation(
        name="election_quorum_off_by_one",
        title="A candidate becomes leader with one vote short of a majority",
        description=(
            "Vote counting tests votes > (n+1)/2 - 1 instead of votes > (n+1)/2.  In a 3-node cluster "
            "that is still 2 of 3 (harmless); in 4- and 5-node clusters 2 votes make a leader, so two "
            "candidates of one term can both win.  Expected symptom: election_safety."),
        method=ON_MESSAGE,
        old="            if self.__votesCount > (len(self.__otherNodes) + 1) / 2:\n",
        new=("            if self.__votesCount > (len(self.__otherNodes) + 1) / 2 - 1:"
             "  # MUTATION election_quorum_off_by_one\n"),
        probe=_probe_election_quorum_off_by_one,
        probe_peers=("b", "c", "d"),
    ),
    Mutation(
        name="count_stale_votes",
        title="A candidate counts votes granted in an earlier term",
        description=(
            "response_vote messages are counted without comparing their term with the candidate's "
            "current term: a late vote from a previous election counts toward this one, so a candidate "
            "can win a term without a majority of that term.  Expected symptom: election_safety (a second "
            "leader in a term someone else won), or leader_completeness when the late votes were granted "
            "before the voters received entries the candidate lacks."),
        method=ON_MESSAGE,
        old="        if message['type'] == 'response_vote' and message['term'] == self.__raftCurrentTerm:\n",
        new="        if message['type'] == 'response_vote':  # MUTATION count_stale_votes\n",
        probe=_probe_count_stale_votes,
    ),
    Mutation(
        name="leader_ignores_higher_term",
        title="A leader that sees a higher term adopts it but stays leader",
        description=(
            "On a request_vote of a higher term the leader updates its term but does not step down "
            "(candidates and followers still behave).  It is now a leader of a term it never won, next "
            "to whoever wins that election.  Expected symptom: election_safety, log_matching."),
        method=ON_MESSAGE,
        old=("        if message['term'] > self.__raftCurrentTerm:\n"
             "            self.__setCurrentTerm(message['term'], None)\n"
             "            self.__setState(_RAFT_STATE.FOLLOWER)\n"
             "            self.__raftLeader = None\n"),
        new=("        if message['term'] > self.__raftCurrentTerm:\n"
             "            self.__setCurrentTerm(message['term'], None)\n"
             "            if self.__raftState != _RAFT_STATE.LEADER:  # MUTATION leader_ignores_higher_term\n"
             "                self.__setState(_RAFT_STATE.FOLLOWER)\n"
             "                self.__raftLeader = None\n"),
        variants=((  # pysyncobj 0.3.11
            "            self.__votedForNodeId = None\n"
            "            self.__setState(_RAFT_STATE.FOLLOWER)\n"
            "            self.__raftLeader = None\n",
            "            self.__votedForNodeId = None\n"
            "            if self.__raftState != _RAFT_STATE.LEADER:  # MUTATION leader_ignores_higher_term\n"
            "                self.__setState(_RAFT_STATE.FOLLOWER)\n"
            "                self.__raftLeader = None\n",
        ),),
        probe=_probe_leader_ignores_higher_term,
    ),
    Mutation(
        name="accept_stale_leader",
        title="A node accepts append_entries from a leader of an older term",
        description=(
            "AppendEntries handling drops the term check: a deposed leader's messages are accepted, "
            "make the receiver a follower of it and truncate/overwrite its log, committed entries "
            "included.  Expected symptom: state_machine_safety / log_matching / durability."),
        method=ON_MESSAGE,
        old="    if message['type'] == 'append_entries' and message['term'] >= self.__raftCurrentTerm:\n",
        new="    if message['type'] == 'append_entries':  # MUTATION accept_stale_leader\n",
        probe=_probe_accept_stale_leader,
    ),
    Mutation(
        name="forget_term_and_vote",
        title="currentTerm and votedFor are not persisted",
        description=(
            "The journal is never told about term or vote changes, so a restarted node comes back with "
            "the term of its last log entry and no vote (pysyncobj before 0.3.16 behaved like this).  "
            "A node that crashes after voting can vote again in the same term.  Needs crash/restart.  "
            "Expected symptom: election_safety."),
        method="_SyncObj__setCurrentTerm",
        old="    self.__raftLog.setCurrentTerm(term, votedForNodeId)",
        new="    pass  # MUTATION forget_term_and_vote: not persisted",
        probe=_probe_forget_term_and_vote,
    ),
    Mutation(
        name="restart_at_term_zero",
        title="A restarted node comes back at term 0 with no vote (term and vote not restored)",
        description=(
            "SyncObj.__init__ ignores the term and vote the journal saved: every restart starts at term 0 "
            "with no vote, as pysyncobj did before 0.3.16 (FINDINGS.md #4).  A node can vote twice in "
            "one term and help elect a leader that lacks committed entries.  Needs crashes and restarts.  "
            "Expected symptom: vote_safety (a vote in a term it had voted in before the crash: the release "
            "stores votes), election_safety / state_machine_safety / leader_completeness."),
        method="__init__",
        old=("    self.__raftCurrentTerm = max(self.__raftLog.getCurrentTerm(), self.__getCurrentLogTerm())\n"
             "    self.__votedForNodeId = self.__raftLog.getVotedForNodeId()\n"),
        new=("    self.__raftCurrentTerm = 0  # MUTATION restart_at_term_zero: term and vote not restored\n"
             "    self.__votedForNodeId = None\n"),
        probe=_probe_restart_at_term_zero,
    ),
]

#: Every injected bug by name.
INJECTED_BUGS: Dict[str, Mutation] = {m.name: m for m in _LIST}
