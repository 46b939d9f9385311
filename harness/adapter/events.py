"""Records what happens inside each pysyncobj node as it happens: the event stream the stream checkers judge.

Two waists, both O(1) per change:

* The journal.  pysyncobj changes its log and stores its commit index only
  through the journal object (``add``, ``clear``, ``deleteEntriesFrom``,
  ``deleteEntriesTo``, ``setRaftCommitIndex``), so :class:`EventJournal`, a
  :class:`~harness.adapter.observe.WatchedJournal`, reports each call the
  moment it returns, with the entries as the node's log holds them then.
* The end of every activation.  The simulated cluster runs pysyncobj code for
  one node at a time (a tick, one delivered message, a client call, a
  connection callback); :meth:`EventTap.end` then compares role, term, vote,
  commit index and applied index with what it saw last.  One activation
  handles one message or runs one tick, and pysyncobj changes each of these at
  most once per activation (a vote, an election won, a commit), so nothing is
  lost between two looks; the commit index is also caught in the journal.  A
  leader handling a ``next_node_idx`` reply also has its match index for that
  follower compared (the only place pysyncobj raises one).

Like the rest of :mod:`harness.adapter` this only reads pysyncobj's state:
the journal calls reach the real journal unchanged and nothing is stored on
the node objects (their attributes end up in snapshots), so the message trace
of a run is the same with or without recording.  The events themselves are
defined in :mod:`harness.check.events`.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

from harness.adapter.observe import VERSION_INFO, WatchedJournal, watch
from harness.check.events import (START, Applied, CommitChanged, Crashed, EntryWritten, Event, Handling,
                                  LeaderElected, LogCompacted, LogReloaded, LogTruncated, MatchRaised,
                                  SnapshotInstalled, Started, VoteGranted, digest)
from harness.state import Entry

_LEADER = 2
#: pysyncobj 0.3.16+ stores term and vote in the journal's metadata (FINDINGS.md #4: earlier releases don't).
VOTE_DURABLE: bool = VERSION_INFO >= (0, 3, 16)
_TICK = Handling("tick")
_HARNESS = Handling("harness")  # the harness itself acting on a node between activations (a crash)


def _entry(e) -> Entry:
    return Entry(e[1], e[2], digest(bytes(e[0])))


def _between(log, lo: int, hi: int) -> Tuple[Entry, ...]:
    """Entries of ``log`` (a pysyncobj journal) with ``lo <= index <= hi``, read where pysyncobj reads them."""
    n = len(log)
    if not n or hi < lo:
        return ()
    first = log[0][1]
    start, stop = max(lo - first, 0), max(hi - first + 1, 0)
    return tuple(_entry(e) for e in log[start:stop] if lo <= e[1] <= hi)


class EventJournal(WatchedJournal):
    """A :class:`WatchedJournal` that also tells its node's recorder (``_node``) about every change, as it
    returns.

    A change that fails half-way (an injected I/O error inside FileJournal)
    leaves the in-memory log however far pysyncobj got; the recorder then
    reports the whole log (:class:`~harness.check.events.LogReloaded`).
    """

    def add(self, command, idx, term):
        if self.compacting:
            return super().add(command, idx, term)
        n = len(self)
        try:
            return super().add(command, idx, term)
        finally:
            self._node.added(n)

    def clear(self):
        if self.compacting:
            return super().clear()
        try:
            return super().clear()
        finally:
            self._node.cleared()

    def deleteEntriesFrom(self, entryFrom):
        n = len(self)
        first = self[0][1] if n else 0
        try:
            return super().deleteEntriesFrom(entryFrom)
        finally:
            self._node.truncated(first, entryFrom, n)

    def deleteEntriesTo(self, entryTo):
        n = len(self)
        try:
            return super().deleteEntriesTo(entryTo)
        finally:
            self._node.compacted(entryTo, n)

    def setRaftCommitIndex(self, raftCommitIndex):
        result = super().setRaftCommitIndex(raftCommitIndex)
        self._node.commit_stored(raftCommitIndex)
        return result


class _NodeTap:
    """The recorder of one node incarnation: what it last saw, and the events it emits."""

    def __init__(self, tap: "EventTap", node_id: str, incarnation: int, obj) -> None:
        self.tap = tap
        self.id = node_id
        self.incarnation = incarnation
        self.obj = obj
        self.log = watch(obj._SyncObj__raftLog, EventJournal)
        self.log._node = self
        self.state = obj._SyncObj__raftState
        self.leader_term: Optional[int] = None
        self.term = obj._SyncObj__raftCurrentTerm
        self.vote = obj._SyncObj__votedForNodeId
        # The commit and applied indexes count from the first look after the node loaded its snapshot
        # (its first tick): until then they are what its files claim, which pysyncobj corrects first.
        self.commit: Optional[int] = None
        self.applied: Optional[int] = None
        self.match: Dict[str, int] = {}  # as a leader: the match index last seen per follower

    def _emit(self, cls, *fields) -> None:
        tap = self.tap
        tap.events.append(cls(tap.now(), self.id, self.incarnation, tap.handling(), *fields))

    # --- the journal ------------------------------------------------------------------------
    def added(self, n: int) -> None:
        log = self.log
        if len(log) == n + 1:
            self._emit(EntryWritten, _entry(log[n]), log[n - 1][2] if n else None)
        elif len(log) != n:
            self.reload()

    def cleared(self) -> None:
        if len(self.log):
            self.reload()
        else:
            self._emit(SnapshotInstalled)

    def truncated(self, first: int, keep: int, n: int) -> None:
        if len(self.log) != min(keep, n):
            self.reload()
        elif n > keep:
            self._emit(LogTruncated, first + keep, keep)

    def compacted(self, drop: int, n: int) -> None:
        log = self.log
        if len(log) != max(n - drop, 0):
            self.reload()
        elif drop > 0:
            self._emit(LogCompacted, log[0][1] if len(log) else None, drop)

    def reload(self) -> None:
        self._emit(LogReloaded, tuple(_entry(e) for e in self.log))

    def commit_stored(self, value: int) -> None:
        if self.commit is not None and value != self.commit:
            self._commit_changed(value)

    # --- the look after each activation ------------------------------------------------------
    def poll(self) -> None:
        obj = self.obj
        term = obj._SyncObj__raftCurrentTerm
        vote = obj._SyncObj__votedForNodeId
        if term != self.term or vote != self.vote:
            if vote is not None:
                self._emit(VoteGranted, term, vote)
            self.term, self.vote = term, vote
        state = obj._SyncObj__raftState
        if state == _LEADER and (self.state != _LEADER or self.leader_term != term):
            self._emit(LeaderElected, term, tuple(sorted([n.id for n in obj._SyncObj__otherNodes] + [self.id])))
            self.leader_term = term
            self.match = {}  # pysyncobj starts every leadership's match indexes at 0
        self.state = state
        envelope = self.tap._envelope
        if state == _LEADER and envelope is not None and envelope.kind == "next_node_idx" \
                and self.tap._activity == "message":
            self._match_reply(envelope.src)
        if self.commit is None and obj._SyncObj__needLoadDumpFile:
            return
        commit = obj._SyncObj__raftCommitIndex
        if commit != self.commit:
            self._commit_changed(commit)
        applied = obj._SyncObj__raftLastApplied
        if applied != self.applied:
            old, self.applied = self.applied, applied
            lo = 1 if old is None else old + 1
            self._emit(Applied, old, applied, term, _between(self.log, lo, applied))

    def _match_reply(self, follower: str) -> None:
        """A leader handled a follower's reply: the one place pysyncobj raises a match index."""
        index = next((i for n, i in self.obj._SyncObj__raftMatchIndex.items() if n.id == follower), 0)
        seen = self.match.get(follower, 0)
        self.match[follower] = index  # lower: reset meanwhile (a read-only node reconnecting starts at 0)
        if index > seen:
            other = self.tap._nodes.get(follower)
            self._emit(MatchRaised, self.term, follower, index, None if other is None else other.incarnation,
                       None if other is None else other.term)

    def _commit_changed(self, new: int) -> None:
        old, self.commit = self.commit, new
        log = self.log
        lo = 1 if old is None else old + 1
        obj = self.obj
        self._emit(CommitChanged, old, new, obj._SyncObj__raftCurrentTerm, log[-1][1] if len(log) else 0,
                   _between(log, lo, new), obj._SyncObj__raftState == _LEADER)


class EventTap:
    """The event stream of one simulated cluster: every node incarnation's events, in the order they happened.

    The cluster calls :meth:`attach` when it builds a node, :meth:`detach` when
    one crashes or leaves, and brackets every activation with :meth:`begin` /
    :meth:`end`; :meth:`take` hands out what was recorded since the last call.
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.events: List[Event] = []
        self._nodes: Dict[str, _NodeTap] = {}
        self._activity: Optional[str] = None  # None: no activation running
        self._envelope = None
        self._handling: Optional[Handling] = _HARNESS

    def handling(self) -> Handling:
        """What the node being run is handling (built once per activation, and only if it is needed)."""
        h = self._handling
        if h is None:
            env = self._envelope
            if env is None:
                h = _TICK if self._activity == "tick" else Handling(self._activity)
            else:
                h = Handling(self._activity, env.seq, env.src, env.dst, env.kind)
            self._handling = h
        return h

    @property
    def active(self) -> bool:
        """True while an activation runs (a call made now is nested in it)."""
        return self._activity is not None

    def begin(self, activity: str, envelope=None) -> tuple:
        """An activation starts: ``activity`` ("tick", "message", "client set"...), ``envelope`` the
        message it handles or follows (None: none).  Returns what :meth:`end` must restore."""
        saved = (self._activity, self._envelope, self._handling)
        self._activity, self._envelope, self._handling = activity, envelope, None
        return saved

    def end(self, node_id: str, saved: tuple) -> None:
        """The activation begun with ``saved = begin(...)`` on ``node_id`` is over: record what changed."""
        node = self._nodes.get(node_id)
        if node is not None:
            node.poll()
        self._activity, self._envelope, self._handling = saved

    def attach(self, node_id: str, incarnation: int, obj) -> None:
        """Start recording a freshly built incarnation (wraps its journal in an :class:`EventJournal`)."""
        node = self._nodes[node_id] = _NodeTap(self, node_id, incarnation, obj)
        self.events.append(Started(self.now(), node_id, incarnation, START, node.term, node.vote,
                                   tuple(_entry(e) for e in node.log), VOTE_DURABLE))

    def detach(self, node_id: str) -> None:
        """The node's incarnation is gone (crashed or removed)."""
        node = self._nodes.pop(node_id, None)
        if node is not None:
            self.events.append(Crashed(self.now(), node_id, node.incarnation,
                                       self.handling() if self.active else _HARNESS))

    def take(self) -> List[Event]:
        """The events recorded since the last call, oldest first."""
        events, self.events = self.events, []
        return events
