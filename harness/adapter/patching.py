"""Source patches of pysyncobj: seeded Raft bugs, and fixes for bugs the harness already found.

A harness that never fails proves nothing.  This module injects classic Raft
bugs into pysyncobj, in-process and only for the duration of a ``with`` block,
so a test can show that the state machine in :mod:`harness.fuzz.machine` catches
each of them::

    from harness.adapter.patching import MUTATIONS, inject

    with inject("vote_twice"):
        run_state_machine_as_test(MyMachine, settings=...)   # must raise

The same mechanism installs :data:`KNOWN_FIXES`: minimal corrections of
findings in FINDINGS.md.  A long fuzzing campaign keeps rediscovering the bug
it finds most easily; with the known fixes in (``pytest properties/
--known-fixes``, ``raft-harness fuzz --known-fixes``) it hunts for the next
one.  Each fix is tied to a finding whose regression test in
``tests/findings/`` still runs against unmodified pysyncobj, so nothing is
hidden: the fixes change what a campaign looks for, not what the test suite
reports.

Each :class:`Mutation` is a source-level patch of one ``pysyncobj.syncobj.SyncObj``
method: the method's source (``inspect.getsource``) gets exactly one
``str.replace``, is compiled again in ``pysyncobj.syncobj``'s globals inside a
``class SyncObj:`` wrapper (so ``self.__x`` still mangles to ``self._SyncObj__x``)
and is installed on ``SyncObj`` until the block exits, also on an exception.
If the snippet to replace is not in this pysyncobj release exactly once,
:class:`MutationNotApplicable` says so: a bug that silently fails to apply
would make a "harness catches it" test meaningless.  For the same reason every
mutation has a *probe*: a direct, single-node check that the patched method
really behaves differently (:meth:`Mutation.verify`).

Caveats
    * pysyncobj binds ``__onMessageReceived`` (and the other transport
      callbacks) when a node is constructed: only nodes created *inside* the
      ``with`` block run the mutated message handler.  Start clusters inside it.
    * Patching is process-global (a class attribute): never run other tests
      concurrently in the same process (pytest-xdist workers are separate
      processes, which is fine).
    * Several mutations can be stacked (``inject("a", "b")``), also on the same
      method: later patches apply to the source already patched by earlier ones.

Together with :mod:`harness.adapter.observe` this is the only module that touches
pysyncobj internals.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import inspect
import io
import itertools
import linecache
import os
import random
import tempfile
import textwrap
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import pysyncobj.pickle as pysyncobj_pickle
import pysyncobj.syncobj as _syncobj
from pysyncobj import SyncObjConf
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from harness.adapter.observe import VERSION

__all__ = ["Mutation", "MutationNotApplicable", "MUTATIONS", "KNOWN_FIXES", "active", "inject", "installed",
           "known_fixes_apply_to", "names", "verify_all"]

_TARGET = _syncobj.SyncObj
_FOLLOWER, _CANDIDATE, _LEADER = 0, 1, 2
_NOOP = b"\x01"  # pysyncobj's no-op command type byte


class MutationNotApplicable(RuntimeError):
    """The code a mutation patches is not in the installed pysyncobj (exactly once)."""


# --------------------------------------------------------------------------------------------
# Probes: one real SyncObj, no network, messages recorded instead of sent.
# --------------------------------------------------------------------------------------------
class _RecordingTransport(Transport):
    def __init__(self, syncObj, selfNode, otherNodes) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self.sent: List[Tuple[str, dict]] = []

    @property
    def ready(self) -> bool:
        return True

    def tryGetReady(self) -> None:
        pass

    def addNode(self, node) -> None:
        pass

    def dropNode(self, node) -> None:
        pass

    def send(self, node, message) -> bool:
        self.sent.append((node.id, message))
        return True

    def destroy(self) -> None:
        pass


class _Probe:
    """A lone pysyncobj node whose private state a probe sets and reads.

    Messages are handed to the mangled handler directly (looked up on the class
    at call time, so a patch installed after construction is the one that runs).
    """

    def __init__(self, self_id: str = "a", others: Sequence[str] = ("b", "c"),
                 journal: Optional[str] = None, dump: Optional[str] = None) -> None:
        conf = SyncObjConf(autoTick=False, dynamicMembershipChange=False, journalFile=journal,
                           fullDumpFile=dump, logCompactionMinEntries=10 ** 9, logCompactionMinTime=10 ** 9)
        self.obj = _TARGET(Node(self_id), [Node(o) for o in others], conf, nodeClass=Node,
                           transportClass=_RecordingTransport)
        self.transport = self.obj._SyncObj__transport

    # state -------------------------------------------------------------------------------
    def set(self, name: str, value) -> None:
        setattr(self.obj, "_SyncObj__" + name, value)

    def get(self, name: str):
        return getattr(self.obj, "_SyncObj__" + name)

    def append(self, index: int, term: int, command: bytes = _NOOP) -> None:
        self.get("raftLog").add(command, index, term)

    @property
    def log(self) -> List[Tuple[int, int]]:
        return [(e[1], e[2]) for e in self.get("raftLog")]

    def node(self, node_id: str) -> Node:
        for n in self.get("otherNodes"):
            if n.id == node_id:
                return n
        return Node(node_id)

    def make(self, role: int, term: int, voted_for: Optional[str] = None) -> None:
        self.set("raftState", role)
        self.set("raftCurrentTerm", term)
        self.set("votedForNodeId", voted_for)
        if role == _LEADER:
            now = _syncobj.monotonicTime()
            self.set("raftLeader", self.get("selfNode"))
            for n in self.get("otherNodes"):
                self.get("raftNextIndex")[n] = self.log[-1][0] + 1
                self.get("raftMatchIndex")[n] = 0
                self.get("lastResponseTime")[n] = now

    # actions -----------------------------------------------------------------------------
    def receive(self, sender: str, message: dict) -> None:
        self.obj._SyncObj__onMessageReceived(self.node(sender), message)

    def tick(self) -> None:
        self.obj._onTick(0.0)

    def sent_to(self, node_id: str, kind: str) -> List[dict]:
        return [m for n, m in self.transport.sent if n == node_id and m["type"] == kind]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.obj._SyncObj__raftLog._destroy()
        with contextlib.suppress(Exception):
            self.obj._poller = None


def _vote_request(term: int, last_index: int, last_term: int) -> dict:
    return {"type": "request_vote", "term": term, "last_log_index": last_index, "last_log_term": last_term}


def _append_entries(term: int, prev: Tuple[int, int], entries: Sequence[Tuple[int, int]], commit: int) -> dict:
    return {"type": "append_entries", "term": term, "commit_index": commit,
            "entries": [(_NOOP, i, t) for i, t in entries], "prevLogIdx": prev[0], "prevLogTerm": prev[1]}


def _probe_vote_twice(p: _Probe) -> bool:
    p.receive("b", _vote_request(1, 1, 0))
    p.receive("c", _vote_request(1, 1, 0))
    # Correct: the vote of term 1 went to b; c gets nothing.
    return bool(p.sent_to("c", "response_vote"))


def _probe_candidate_gives_vote(p: _Probe) -> bool:
    p.make(_CANDIDATE, 1, "a")  # campaigning in term 1, with its own vote
    p.receive("b", _vote_request(1, 1, 0))  # a rival candidate of the same term
    return bool(p.sent_to("b", "response_vote"))


def _probe_vote_stale_log(p: _Probe) -> bool:
    p.append(2, 1)
    p.make(_FOLLOWER, 1)
    p.receive("b", _vote_request(2, 1, 0))  # b's log ends at 1@0, ours at 2@1
    return bool(p.sent_to("b", "response_vote"))


def _probe_commit_old_term(p: _Probe) -> bool:
    p.append(2, 1)
    p.make(_LEADER, 2)
    p.get("raftMatchIndex")[p.node("b")] = 2  # 2@1 is on a majority, but it is from an older term
    p.tick()
    return p.obj.raftCommitIndex == 2


def _probe_no_truncate(p: _Probe) -> bool:
    p.append(2, 1)
    p.append(3, 1)
    p.make(_FOLLOWER, 1)
    p.receive("b", _append_entries(2, (1, 0), [(2, 2)], 1))
    # Correct: 2@1 and 3@1 conflict with 2@2 and are replaced, the log ends at 2@2.
    return (2, 1) in p.log


def _probe_commit_past_leader(p: _Probe) -> bool:
    p.make(_FOLLOWER, 1)
    p.receive("b", _append_entries(1, (1, 0), [(2, 1), (3, 1)], 1))
    return p.obj.raftCommitIndex == 3  # correct: min(leader commit 1, last index 3) = 1


def _probe_commit_quorum_off_by_one(p: _Probe) -> bool:
    p.append(2, 1)
    p.make(_LEADER, 1)  # no follower has 2@1 yet
    p.tick()
    return p.obj.raftCommitIndex == 2


def _election_probe(p: _Probe, vote_term: int) -> bool:
    p.receive("b", {"type": "response_vote", "term": vote_term})
    return p.get("raftState") == _LEADER


def _probe_election_quorum_off_by_one(p: _Probe) -> bool:
    p.make(_CANDIDATE, 1, "a")
    p.set("votesCount", 1)
    return _election_probe(p, 1)  # 2 votes of 4 are not a majority


def _probe_count_stale_votes(p: _Probe) -> bool:
    p.make(_CANDIDATE, 2, "a")
    p.set("votesCount", 1)
    return _election_probe(p, 1)  # a vote granted in term 1 says nothing about term 2


def _probe_leader_ignores_higher_term(p: _Probe) -> bool:
    p.make(_LEADER, 1, "a")
    p.receive("b", _vote_request(2, 1, 0))
    return p.get("raftState") == _LEADER and p.obj.raftCurrentTerm == 2


def _probe_accept_stale_leader(p: _Probe) -> bool:
    p.append(2, 3)
    p.make(_FOLLOWER, 3)
    p.receive("b", _append_entries(2, (1, 0), [(2, 2)], 1))  # a deposed leader of term 2
    return (2, 2) in p.log


def _probe_restart_at_term_zero(p: _Probe) -> bool:
    with tempfile.TemporaryDirectory(prefix="mutation-probe-") as d:
        journal = os.path.join(d, "journal")
        before = _Probe(journal=journal)
        try:
            before.receive("b", _vote_request(3, 1, 0))  # term 3, vote for b: stored in the journal's meta
        finally:
            before.close()
        after = _Probe(journal=journal)  # the restart
        try:
            return after.obj.raftCurrentTerm != 3 or after.get("votedForNodeId") != "b"
        finally:
            after.close()


def _probe_forget_term_and_vote(p: _Probe) -> bool:
    p.receive("b", _vote_request(1, 1, 0))
    journal = p.get("raftLog")
    return journal.getCurrentTerm() != 1 or journal.getVotedForNodeId() != "b"


# --------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Mutation:
    """One patch (a seeded bug or a known fix): replace ``old`` by ``new`` in the source of ``SyncObj.<method>``.

    ``variants`` are alternative ``(old, new)`` pairs for other pysyncobj
    releases; the first whose ``old`` occurs exactly once is applied.  Snippets
    are written against the *dedented* method source.
    """

    name: str
    title: str
    description: str
    method: str  # attribute name on SyncObj, already mangled (``_SyncObj__onMessageReceived``)
    old: str
    new: str
    probe: Callable[[_Probe], bool]
    probe_peers: Tuple[str, ...] = ("b", "c")
    variants: Tuple[Tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.name}: {self.title}"

    def patch_source(self, source: str) -> str:
        """``source`` (a dedented method) with this bug in it; MutationNotApplicable if it can't be."""
        counts = []
        for old, new in ((self.old, self.new),) + self.variants:
            n = source.count(old)
            if n == 1:
                return source.replace(old, new)
            counts.append(n)
        raise MutationNotApplicable(
            f"mutation {self.name!r}: pysyncobj {VERSION} does not have the code it patches in "
            f"SyncObj.{self.method} (snippet found {counts} times, need exactly once); this release "
            f"may not have that code, or already behave that way.  Snippet:\n{self.old}")

    def patched_method_source(self) -> str:
        """The source this mutation would install, from the installed pysyncobj; MutationNotApplicable if none."""
        current = getattr(_TARGET, self.method, None)
        if current is None:
            raise MutationNotApplicable(f"mutation {self.name!r}: pysyncobj {VERSION} has no "
                                        f"SyncObj.{self.method}; this release doesn't have that code")
        return self.patch_source(_method_source(current))

    def applies(self) -> bool:
        """Whether the installed pysyncobj has the code this mutation patches (exactly once)."""
        try:
            self.patched_method_source()
        except MutationNotApplicable:
            return False
        return True

    def verify(self) -> None:
        """Check directly that the patch changes behaviour: the probe must pass only when injected.

        Raises MutationNotApplicable if this release lacks the code, AssertionError if the probe
        does not tell the unmodified and the patched method apart.
        """
        self.patched_method_source()
        if _run_probe(self):
            raise AssertionError(f"probe of patch {self.name!r} already passes on unmodified pysyncobj "
                                 f"{VERSION}: the probe is wrong or this release behaves that way already")
        with inject(self):
            if not _run_probe(self):
                raise AssertionError(f"patch {self.name!r} was installed but its probe does not see the "
                                     f"change: the patch does not change behaviour on pysyncobj {VERSION}")


@contextlib.contextmanager
def _probe_clock() -> Iterator[None]:
    """pysyncobj's clock and randomness for a probe: private, deterministic, and independent of any
    simulated cluster alive in this process (whose clock refuses reads outside its steps)."""
    saved = (_syncobj.monotonicTime, _syncobj.random)
    ticks = itertools.count()
    _syncobj.monotonicTime = lambda: 1000.0 + next(ticks) * 1e-6
    _syncobj.random = random.Random(0)
    try:
        yield
    finally:
        _syncobj.monotonicTime, _syncobj.random = saved


def _run_probe(m: Mutation) -> bool:
    with _probe_clock():
        p = _Probe(others=m.probe_peers)
        try:
            return bool(m.probe(p))
        finally:
            p.close()


_ON_MESSAGE = "_SyncObj__onMessageReceived"

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
        method=_ON_MESSAGE,
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
        method=_ON_MESSAGE,
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
        method=_ON_MESSAGE,
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
            "together.  Expected symptom: state_machine_safety / durability / leader_completeness."),
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
        method=_ON_MESSAGE,
        old=("                self.__deleteEntriesFrom(prevLogIdx + 1)\n"
             "            for entry in newEntries:\n"
             "                self.__raftLog.add(*entry)\n"),
        new=("                pass  # MUTATION no_truncate: the conflicting suffix stays\n"
             "            for entry in newEntries:\n"
             "                if entry[1] > self.__getCurrentLogIndex():\n"
             "                    self.__raftLog.add(*entry)\n"),
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
        method=_ON_MESSAGE,
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
        method=_ON_MESSAGE,
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
        method=_ON_MESSAGE,
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
        method=_ON_MESSAGE,
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
        method=_ON_MESSAGE,
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

#: Every seeded bug by name.
MUTATIONS: Dict[str, Mutation] = {m.name: m for m in _LIST}


# --------------------------------------------------------------------------------------------
# Known fixes (FINDINGS.md); each probe is True when the *fixed* behaviour is there
# --------------------------------------------------------------------------------------------
def _probe_snapshot_chunk_keeps_commit(p: _Probe) -> bool:
    p.append(2, 1)
    p.append(3, 1)
    p.make(_FOLLOWER, 1)
    # The first chunk of a snapshot from a leader of term 2 that committed up to 3.
    p.receive("b", {"type": "append_entries", "term": 2, "commit_index": 3, "serialized": (b"chunk", True, False)})
    return p.obj.raftCommitIndex < 2  # 2@1 and 3@1 are this node's own, never committed entries


def _probe_stale_snapshot_keeps_log(p: _Probe) -> bool:
    with tempfile.TemporaryDirectory(prefix="fix-probe-") as d:
        dump = os.path.join(d, "dump")
        node = _Probe(dump=dump)
        try:
            for index in range(2, 6):
                node.append(index, 1)
            node.set("raftCommitIndex", 5)
            node.set("raftLastApplied", 5)
            node.make(_FOLLOWER, 1)
            with open(dump, "wb") as f:
                f.write(b"the node's own dump")
            # A one-chunk snapshot ending at 3@1, an entry this node has (and committed, and applied).
            data = io.BytesIO()
            with gzip.GzipFile(fileobj=data, mode="wb") as g:
                pysyncobj_pickle.dump((None, (_NOOP, 3, 1), (_NOOP, 2, 1), set()), g)
            node.receive("b", {"type": "append_entries", "term": 1, "commit_index": 5,
                               "serialized": (data.getvalue(), True, True)})
            with open(dump, "rb") as f:
                own_dump_kept = f.read() == b"the node's own dump"
            return (node.obj.raftCommitIndex == 5 and node.obj.raftLastApplied == 5 and node.log[-1] == (5, 1)
                    and own_dump_kept)
        finally:
            node.close()


_FIX_LIST = [
    Mutation(
        name="snapshot_chunk_commit",
        title="Finding 3: a snapshot chunk does not advance the commit index",
        description=(
            "Until the last chunk of a snapshot has arrived, the receiver's log is still its own old "
            "log, so the leader's commit index says nothing about it: return after storing a chunk "
            "instead of raising the commit index over entries the receiver appended alone.  Regression "
            "test: tests/findings/test_snapshot_chunk_commits_stale_entries.py."),
        method=_ON_MESSAGE,
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
        method=_ON_MESSAGE,
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

#: Fixes for findings the harness made, by name (never a seeded bug's name).
KNOWN_FIXES: Dict[str, Mutation] = {m.name: m for m in _FIX_LIST}
assert not set(KNOWN_FIXES) & set(MUTATIONS)


def known_fixes_apply_to(path: Path, root: Path) -> bool:
    """Whether ``--known-fixes`` patches the tests at ``path`` (a file or directory): only those in a
    ``properties/`` directory (looked for below ``root`` when ``path`` is inside it), never the
    harness' own tests, whose finding tests must keep failing on the unmodified releases."""
    try:
        path = path.relative_to(root)
    except ValueError:
        pass
    return "properties" in path.parts


def names() -> List[str]:
    """The seeded bugs' names (the known fixes are the keys of :data:`KNOWN_FIXES`)."""
    return list(MUTATIONS)


# --------------------------------------------------------------------------------------------
# Installing patches
# --------------------------------------------------------------------------------------------
_SOURCE_ATTR = "__mutation_source__"
_counter = [0]


def _method_source(func) -> str:
    """Dedented source of ``func``: pysyncobj's, or the patched text of an earlier mutation."""
    patched = getattr(func, _SOURCE_ATTR, None)
    if patched is not None:
        return patched
    return textwrap.dedent(inspect.getsource(func))


def _compile(m: Mutation, source: str):
    _counter[0] += 1
    filename = f"<mutation {m.name} #{_counter[0]}: SyncObj.{m.method}>"
    wrapped = "class SyncObj:\n" + textwrap.indent(source, "    ")
    # Register the text so tracebacks through the patched method show its lines.
    linecache.cache[filename] = (len(wrapped), None, wrapped.splitlines(True), filename)
    namespace: dict = {}
    exec(compile(wrapped, filename, "exec"), vars(_syncobj), namespace)
    func = namespace["SyncObj"].__dict__.get(m.method)
    if func is None:
        raise MutationNotApplicable(f"mutation {m.name!r}: compiling SyncObj.{m.method} did not define it "
                                    f"(defined: {sorted(namespace['SyncObj'].__dict__)})")
    func.__qualname__ = f"SyncObj.{m.method}"
    setattr(func, _SOURCE_ATTR, source)
    setattr(func, "__mutation__", m.name)
    return func


#: Names of the patches installed right now, in installation order.
_INSTALLED: List[str] = []


def installed() -> List[str]:
    """Every patch installed right now (seeded bugs and known fixes), in the order they went in;
    a counterexample records them so that its replay runs on the same code."""
    return list(_INSTALLED)


@contextlib.contextmanager
def inject(*mutations: Union[str, Mutation]) -> Iterator[List[Mutation]]:
    """Install the given patches (names from :data:`MUTATIONS` or :data:`KNOWN_FIXES`, or Mutation
    objects) on ``pysyncobj.syncobj.SyncObj`` for the duration of the block.

    Every patch is compiled (and checked to apply) before the block starts, and
    the original attributes are put back on exit, also when the block raises.
    """
    if not mutations:
        raise ValueError("inject() needs at least one mutation")
    known = {**MUTATIONS, **KNOWN_FIXES}
    unknown = [m for m in mutations if not isinstance(m, Mutation) and m not in known]
    if unknown:
        raise KeyError(f"unknown mutation(s) {unknown}; seeded bugs: {names()}, known fixes: {list(KNOWN_FIXES)}")
    mutations = [m if isinstance(m, Mutation) else known[m] for m in mutations]
    saved: List[Tuple[str, bool, object]] = []
    depth = len(_INSTALLED)
    try:
        for m in mutations:
            had = m.method in vars(_TARGET)
            func = _compile(m, m.patched_method_source())
            saved.append((m.method, had, vars(_TARGET).get(m.method)))
            setattr(_TARGET, m.method, func)
            _INSTALLED.append(m.name)
        yield mutations
    finally:
        for method, had, original in reversed(saved):
            if had:
                setattr(_TARGET, method, original)
            else:
                delattr(_TARGET, method)
        del _INSTALLED[depth:]


def active() -> Dict[str, str]:
    """Methods of SyncObj currently patched, and by which mutation (empty when none is injected)."""
    return {k: v.__mutation__ for k, v in vars(_TARGET).items() if hasattr(v, "__mutation__")}


def verify_all(registry: Optional[Dict[str, Mutation]] = None) -> Dict[str, Optional[str]]:
    """Run every probe of ``registry`` (default :data:`MUTATIONS`); name -> None if the patch applies
    and changes behaviour, else the reason."""
    out: Dict[str, Optional[str]] = {}
    for name, m in (MUTATIONS if registry is None else registry).items():
        try:
            m.verify()
            out[name] = None
        except (AssertionError, MutationNotApplicable) as e:
            out[name] = str(e)
    return out
