"""Raft's safety properties judged on the event stream: every change, at the moment it happened.

The step-end invariants of :mod:`harness.check.invariants` see each node once
per step.  These see every event of :mod:`harness.check.events`, in order, so

* a second leader of a term is caught when it is elected, even if it steps
  down a millisecond later (``election_safety``);
* a second vote in one term is caught when it is granted (``vote_safety``;
  across restarts too on releases that store the vote, 0.3.16+), and a
  leader elected without the votes of a majority in its term when it is
  elected (``election_quorum``);
* an entry counts as committed as the node's own log held it at the instant
  its commit index passed it, or at the instant a node applied it, never as a
  copy the checker kept (``state_machine_safety``), and so does an entry
  written at or below the node's commit index; the commit index and the
  applied index never go back within an incarnation, however briefly;
* the leader's log is judged at the instant it was elected
  (``leader_completeness``), against the log rebuilt from its own events;
* every (index, term) written anywhere carries one command and follows one
  term (``log_matching``);
* a leader's commit index lands only on an entry of its own term
  (``leader_commit_rule``, Figure 8's first step), and its match index for a
  follower rises only to an index where the follower holds the leader's entry
  (``leader_match_rule``).

Each handler costs O(1) per event (O(entries) for a commit or apply event),
so a run's checking cost follows what happened, not how long it ran.
A violation names the event that broke the property (time, node, what it was
handling).  :class:`harness.check.invariants.SafetyChecker` with
``stream=True`` runs these next to ``durability`` and ``no_node_errors``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from harness.check.events import (Applied, CommitChanged, Crashed, EntryWritten, Event, LeaderElected,
                                  LogCompacted, LogReloaded, LogTruncated, MatchRaised, SnapshotInstalled,
                                  Started, VoteGranted)
from harness.check.invariants import Invariant, LogHistory, Violation
from harness.state import Entry

Handler = Callable[[Event, List[Violation]], None]
_Key = Tuple[str, int]  # (node, incarnation)


def _violation(name: str, e: Event, message: str, **where) -> Violation:
    return Violation(name, message, at=e.time, node=e.node, handling=str(e.handling), **where)


class StreamHistory(LogHistory):
    """What the stream checkers share: :class:`LogHistory`'s record of committed entries, plus every live
    incarnation's log and commit index exactly as its events left them."""

    def __init__(self) -> None:
        super().__init__()
        self.logs: Dict[_Key, List[Entry]] = {}
        self.commit: Dict[_Key, int] = {}

    def entry(self, key: _Key, index: int) -> Optional[Entry]:
        """The entry at ``index`` in that incarnation's log, or None."""
        log = self.logs.get(key)
        if not log:
            return None
        i = index - log[0].index
        if 0 <= i < len(log) and log[i].index == index:
            return log[i]
        lo, hi = 0, len(log)  # a journal with a gap (harness.sim.storage): indexes still increase
        while lo < hi:
            mid = (lo + hi) // 2
            if log[mid].index < index:
                lo = mid + 1
            else:
                hi = mid
        return log[lo] if lo < len(log) and log[lo].index == index else None

    def _log(self, e: Event) -> List[Entry]:
        log = self.logs.get((e.node, e.incarnation))
        if log is None:
            raise ValueError(f"{type(e).__name__} of {e.node} (incarnation {e.incarnation}) came before its "
                             f"Started event: a stream checker must get every event since the cluster was built")
        return log

    def first_index(self, key: _Key) -> Optional[int]:
        log = self.logs.get(key)
        return log[0].index if log else None

    def handlers(self) -> Dict[type, Handler]:
        return {Started: self._started, Crashed: self._crashed, EntryWritten: self._written,
                LogTruncated: self._truncated, LogCompacted: self._compacted,
                SnapshotInstalled: self._emptied, LogReloaded: self._reloaded, CommitChanged: self._committed}

    def _started(self, e: Started, out) -> None:
        for old in [k for k in self.logs if k[0] == e.node]:
            del self.logs[old]
            self.commit.pop(old, None)
        self.logs[(e.node, e.incarnation)] = list(e.log)

    def _crashed(self, e: Crashed, out) -> None:
        self.logs.pop((e.node, e.incarnation), None)
        self.commit.pop((e.node, e.incarnation), None)

    def _written(self, e: EntryWritten, out) -> None:
        self._log(e).append(e.entry)

    def _truncated(self, e: LogTruncated, out) -> None:
        del self._log(e)[e.keep:]

    def _compacted(self, e: LogCompacted, out) -> None:
        del self._log(e)[:e.drop]

    def _emptied(self, e: SnapshotInstalled, out) -> None:
        self._log(e).clear()

    def _reloaded(self, e: LogReloaded, out) -> None:
        self._log(e)[:] = e.log

    def _committed(self, e: CommitChanged, out) -> None:
        self.commit[(e.node, e.incarnation)] = e.new


class StreamInvariant(Invariant):
    """A property judged event by event (:meth:`handlers`); :meth:`check` judges the step-end sample."""

    def handlers(self) -> Dict[type, Handler]:
        raise NotImplementedError

    def check(self, states):
        return []


class ElectionSafety(StreamInvariant):
    """At most one node wins each term, over the whole run: every election won is judged when it is won."""

    name = "election_safety"

    def __init__(self) -> None:
        self.leaders: Dict[int, str] = {}

    def handlers(self):
        return {LeaderElected: self._elected}

    def _elected(self, e: LeaderElected, out: List[Violation]) -> None:
        first = self.leaders.setdefault(e.term, e.node)
        if first != e.node:
            out.append(_violation(self.name, e, f"two leaders in term {e.term}: {first} and {e.node}",
                                  nodes=(first, e.node), terms=(e.term,)))


class VoteSafety(StreamInvariant):
    """A node votes for at most one candidate per term: within an incarnation always, and across its
    restarts when the release stores the vote (pysyncobj 0.3.16+; on older releases a restarted node
    forgets its vote, FINDINGS.md #4, which ``election_safety`` reports when it elects a second leader)."""

    name = "vote_safety"

    def __init__(self) -> None:
        self.durable: Dict[str, bool] = {}
        self.votes: Dict[tuple, Tuple[str, int]] = {}  # (node, term) or (node, incarnation, term) -> (candidate, inc)

    def handlers(self):
        return {Started: self._started, VoteGranted: self._voted}

    def _key(self, node: str, incarnation: int, term: int) -> tuple:
        return (node, term) if self.durable.get(node) else (node, incarnation, term)

    def _started(self, e: Started, out) -> None:
        self.durable[e.node] = e.vote_durable
        if e.voted_for is not None:  # the vote it stored before its crash still binds it
            self.votes.setdefault(self._key(e.node, e.incarnation, e.term), (e.voted_for, e.incarnation))

    def _voted(self, e: VoteGranted, out: List[Violation]) -> None:
        first, incarnation = self.votes.setdefault(self._key(e.node, e.incarnation, e.term),
                                                   (e.candidate, e.incarnation))
        if first != e.candidate:
            before = "" if incarnation == e.incarnation else f" (in incarnation {incarnation}, now {e.incarnation})"
            out.append(_violation(self.name, e, f"{e.node} voted twice in term {e.term}: for {first}{before} "
                                  f"and for {e.candidate}", nodes=tuple(dict.fromkeys((e.node, first, e.candidate))),
                                  terms=(e.term,)))


class LogMatching(StreamInvariant):
    """Every (index, term) ever written carries one command and follows an entry of one term, so two logs
    with an equal entry are equal up to it (by induction, down to the compaction point)."""

    name = "log_matching"

    def __init__(self, logs: LogHistory) -> None:
        self.logs = logs

    def handlers(self):
        return {EntryWritten: self._written, Started: self._loaded, LogReloaded: self._loaded}

    def _written(self, e: EntryWritten, out: List[Violation]) -> None:
        self._judge(e, e.entry, e.prev_term, out)

    def _loaded(self, e, out: List[Violation]) -> None:
        prev = None
        for entry in e.log:
            self._judge(e, entry, prev, out)
            prev = entry.term

    def _judge(self, e: Event, entry: Entry, prev_term: Optional[int], out: List[Violation]) -> None:
        key = (entry.index, entry.term)
        seen = self.logs.by_index_term.setdefault(key, (entry.command, prev_term, e.node))
        if seen[1] is None and prev_term is not None:  # first seen at the start of a log
            self.logs.by_index_term[key] = seen = (seen[0], prev_term, e.node)
        if seen[0] != entry.command:
            out.append(_violation(self.name, e, f"entry {entry} differs between {seen[2]} and {e.node}",
                                  nodes=(seen[2], e.node), terms=(entry.term,), indexes=(entry.index,)))
        elif prev_term is not None and seen[1] is not None and seen[1] != prev_term:
            out.append(_violation(
                self.name, e, f"entry {entry} follows an entry of term {seen[1]} on {seen[2]} "
                f"but of term {prev_term} on {e.node}: the logs differ below it",
                nodes=(seen[2], e.node), terms=(entry.term, seen[1], prev_term), indexes=(entry.index - 1,)))


class StateMachineSafety(StreamInvariant):
    """No two nodes commit or apply different entries at one index; within an incarnation the commit index
    and the applied index never go back and the commit index never passes the node's own log.

    An entry is judged as the node's log held it when the commit index passed
    it, when the node applied it, or when it was written at or below the
    commit index: never from a copy that may have gone stale since.
    """

    name = "state_machine_safety"

    def __init__(self, logs: StreamHistory) -> None:
        self.logs = logs
        self._reported: set = set()  # (node, entry): a commit and the apply that follows say the same

    def handlers(self):
        return {CommitChanged: self._commit, Applied: self._applied, EntryWritten: self._written}

    def _judge(self, e: Event, node_term: int, entry: Entry, out: List[Violation]) -> None:
        self._compare(e, self.logs.add_committed(e.node, node_term, entry), entry, out)

    def _compare(self, e: Event, known: Optional[Tuple[int, bytes, str]], entry: Entry,
                 out: List[Violation]) -> None:
        if known is not None and (known[0] != entry.term or known[1] != entry.command) \
                and (e.node, entry) not in self._reported:
            self._reported.add((e.node, entry))
            out.append(_violation(self.name, e, f"index {entry.index} committed as {entry.index}@{known[0]} on "
                                  f"{known[2]} but as {entry} on {e.node}", nodes=(known[2], e.node),
                                  terms=(known[0], entry.term), indexes=(entry.index,)))

    def _commit(self, e: CommitChanged, out: List[Violation]) -> None:
        if e.old is not None and e.new < e.old:
            out.append(_violation(self.name, e, f"{e.node} commit index went back from {e.old} to {e.new}",
                                  nodes=(e.node,), indexes=(e.old, e.new)))
        if e.new > e.last_index:
            out.append(_violation(self.name, e, f"{e.node} claims commit index {e.new} past its last log index "
                                  f"{e.last_index}", nodes=(e.node,), indexes=(e.new, e.last_index)))
        for entry in e.entries:
            self._judge(e, e.term, entry, out)

    def _applied(self, e: Applied, out: List[Violation]) -> None:
        if e.old is not None and e.new < e.old:
            out.append(_violation(self.name, e, f"{e.node} applied index went back from {e.old} to {e.new}: "
                                  f"applied entries were rolled back", nodes=(e.node,), indexes=(e.old, e.new)))
        for entry in e.entries:
            self._judge(e, e.term, entry, out)

    def _written(self, e: EntryWritten, out: List[Violation]) -> None:
        commit = self.logs.commit.get((e.node, e.incarnation))
        if commit is not None and e.entry.index <= commit:  # the node holds it as committed: compare it
            self._compare(e, self.logs.committed.get(e.entry.index), e.entry, out)

    def check(self, states):
        return [Violation(self.name, f"{s.id} claims commit index {s.commit_index} past its last log index "
                          f"{s.last_index}", nodes=(s.id,), indexes=(s.commit_index, s.last_index))
                for s in states if s.up and s.commit_index > s.last_index]


class ElectionQuorum(StreamInvariant):
    """A leader of term T was granted votes in T by a majority of the configuration it counted in.

    A win without one (a vote of an earlier term counted, one vote counted twice, a vote from outside
    the configuration, a miscounted majority) is caught the instant it happens, whether or not a second
    leader of T ever appears.  Votes are the :class:`VoteGranted` events, a candidate's own included,
    of every incarnation: a vote given before a crash was given.
    """

    name = "election_quorum"

    def __init__(self) -> None:
        self.votes: Dict[Tuple[int, str], set] = {}  # (term, candidate) -> nodes that voted for it

    def handlers(self):
        return {VoteGranted: self._voted, LeaderElected: self._elected}

    def _voted(self, e: VoteGranted, out: List[Violation]) -> None:
        self.votes.setdefault((e.term, e.candidate), set()).add(e.node)

    def _elected(self, e: LeaderElected, out: List[Violation]) -> None:
        if not e.voters:
            return
        granted = sorted(self.votes.get((e.term, e.node), set()) & set(e.voters))
        if 2 * len(granted) <= len(e.voters):
            out.append(_violation(self.name, e, f"{e.node} became leader of term {e.term} with the votes of "
                                  f"{', '.join(granted) or 'nobody'} in that term, {len(granted)} of the "
                                  f"{len(e.voters)} voters it counts ({', '.join(e.voters)})",
                                  nodes=(e.node,), terms=(e.term,)))


class LeaderCompleteness(StreamInvariant):
    """A leader holds, at the instant it is elected, every entry committed in an earlier term (the highest
    one is checked: log matching covers the entries below it)."""

    name = "leader_completeness"

    def __init__(self, logs: StreamHistory) -> None:
        self.logs = logs

    def handlers(self):
        return {LeaderElected: self._elected}

    def _elected(self, e: LeaderElected, out: List[Violation]) -> None:
        latest = self.logs.highest_committed_before(e.term)
        if latest is None:
            return
        index, term = latest
        key = (e.node, e.incarnation)
        first = self.logs.first_index(key)
        if first is not None and index < first:
            return  # inside the leader's snapshot, which holds only committed state
        entry = self.logs.entry(key, index)
        if entry is None or entry.term != term:
            have = "nothing" if entry is None else str(entry)
            out.append(_violation(self.name, e, f"{e.node} became leader of term {e.term} without entry "
                                  f"{index}@{term}, committed in an earlier term (it has {have})",
                                  nodes=(e.node,), terms=(e.term, term), indexes=(index,)))


class LeaderCommitRule(StreamInvariant):
    """A leader moves its commit index only onto an entry of its own term (paper §5.4.2): an older
    entry on a majority is committed by the leader's own entry above it, never by counting replicas.

    Breaking the rule is not yet a lost entry (Figure 8 needs a crash and another election after it),
    so this catches a leader that would commit too early at the instant it does, not steps later when a
    newer leader overwrites the entry.  A follower's commit index follows its leader's and is not judged.
    """

    name = "leader_commit_rule"

    def handlers(self):
        return {CommitChanged: self._commit}

    def _commit(self, e: CommitChanged, out: List[Violation]) -> None:
        if not e.leader or e.old is None or e.new <= e.old:
            return
        entry = next((x for x in reversed(e.entries) if x.index == e.new), None)
        if entry is not None and entry.term != e.term:
            out.append(_violation(self.name, e, f"leader {e.node} of term {e.term} moved its commit index from "
                                  f"{e.old} to {e.new}, onto {entry} of an earlier term: it counted replicas "
                                  f"of an entry its own term does not cover", nodes=(e.node,),
                                  terms=(e.term, entry.term), indexes=(e.new,)))


class LeaderMatchRule(StreamInvariant):
    """A leader counts a follower up to an index only where the follower's log holds the leader's entry.

    A match index is what the commit rule counts; one that vouches for an entry the follower does not hold
    lets the leader commit an entry a minority holds (finding 21: a success reply of an earlier leadership).
    Judged when the index rises, against both logs at that instant: by log matching (judged on its own)
    the same entry at that index means the same log up to it.  Not judged: a follower that has moved on
    to a later term (a newer leader may have replaced its log since it replied), a follower that is
    down, and an index inside either node's snapshot, which holds only committed entries.
    """

    name = "leader_match_rule"

    def __init__(self, logs: StreamHistory) -> None:
        self.logs = logs

    def handlers(self):
        return {MatchRaised: self._raised}

    def _held(self, key: _Key, index: int) -> Tuple[bool, Optional[Entry]]:
        """(judgeable, entry): False where ``index`` is inside the log's snapshot or the log is empty."""
        first = self.logs.first_index(key)
        if first is None or index < first:
            return False, None
        return True, self.logs.entry(key, index)

    def _raised(self, e: MatchRaised, out: List[Violation]) -> None:
        if e.follower_incarnation is None or e.follower_term > e.term:
            return
        judged, mine = self._held((e.node, e.incarnation), e.index)
        theirs_judged, theirs = self._held((e.follower, e.follower_incarnation), e.index)
        if not (judged and theirs_judged) or (mine is not None and theirs is not None and mine.term == theirs.term):
            return
        have = "nothing" if theirs is None else str(theirs)
        wanted = "no entry" if mine is None else str(mine)
        out.append(_violation(self.name, e, f"leader {e.node} of term {e.term} counts {e.follower} up to index "
                              f"{e.index}, where {e.follower} has {have} and the leader {wanted}",
                              nodes=(e.node, e.follower), terms=(e.term,), indexes=(e.index,)))


def stream_invariants(logs: StreamHistory) -> List[StreamInvariant]:
    """The stream checkers, in the order a step reports them."""
    return [ElectionSafety(), VoteSafety(), ElectionQuorum(), LogMatching(logs), StateMachineSafety(logs),
            LeaderCompleteness(logs), LeaderCommitRule(), LeaderMatchRule(logs)]


def dispatch(sources: Sequence) -> Dict[type, Tuple[Handler, ...]]:
    """Event type -> the handlers of ``sources`` (objects with ``handlers()``) for it, in order."""
    table: Dict[type, List[Handler]] = {}
    for source in sources:
        for kind, handler in source.handlers().items():
            table.setdefault(kind, []).append(handler)
    return {kind: tuple(handlers) for kind, handlers in table.items()}
