"""Raft's safety properties, checked incrementally after every step.

Each invariant is a small object fed the cluster's observed :class:`NodeState`
tuple once per step.  They keep just enough memory (a mirror of each live
log, the committed entries, the leader of each term) that the work per step
follows what changed in that step, not how long the run has been.

A broken property is reported as a :class:`Violation`; :class:`SafetyChecker`
runs them all and raises :class:`SafetyViolation` on the first step that
breaks any of them.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from harness.history import OK, WRITE, Operation
from harness.state import Entry, NodeState


@dataclasses.dataclass(frozen=True)
class Violation:
    """A broken property.  A stream checker (:mod:`harness.check.stream`) also says which event broke it:
    its virtual time ``at``, the ``node`` it happened on and what that node was ``handling`` (the
    message, e.g. ``append_entries #812 n3->n1``, or a tick); a step-end check leaves them None."""

    invariant: str
    message: str
    nodes: Tuple[str, ...] = ()
    terms: Tuple[int, ...] = ()
    indexes: Tuple[int, ...] = ()
    at: Optional[float] = None
    node: Optional[str] = None
    handling: Optional[str] = None

    def __str__(self) -> str:
        where = []
        if self.nodes:
            where.append("nodes " + ", ".join(self.nodes))
        if self.terms:
            where.append("terms " + ", ".join(map(str, self.terms)))
        if self.indexes:
            where.append("indexes " + ", ".join(map(str, self.indexes)))
        text = f"{self.invariant}: {self.message}" + (f" ({'; '.join(where)})" if where else "")
        if self.at is not None:
            text += f" at t={self.at:.6f}" + (f" on {self.node}" if self.node else "") + \
                (f" handling {self.handling}" if self.handling else "")
        return text


class SafetyViolation(AssertionError):
    """Raised when a step breaks a Raft safety property."""

    def __init__(self, violations: Sequence[Violation], details: str = "") -> None:
        self.violations = tuple(violations)
        self.details = details
        text = "\n".join(str(v) for v in self.violations)
        super().__init__(f"{text}\n{details}" if details else text)


class LivenessViolation(AssertionError):
    """After every fault was healed and every node restarted, the cluster did not make progress, or
    left a client unanswered (``violations`` then names the property, for triage and reports)."""

    def __init__(self, message: str, violations: Sequence[Violation] = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)


class _LogMirror:
    """The harness' copy of one incarnation's log (terms and commands), patched by each step's changes."""

    def __init__(self) -> None:
        self.base = 0  # index of terms[0]
        self.terms: List[int] = []
        self.commands: List[bytes] = []
        self.snapshots_installed = 0

    def apply(self, state: NodeState) -> None:
        if state.snapshots_installed != self.snapshots_installed:
            # A snapshot from the leader replaced the whole log.  What the mirror holds below the new
            # log is this node's old, possibly never committed, entries, not what the snapshot covers.
            self.snapshots_installed = state.snapshots_installed
            self.base, self.terms, self.commands = state.first_index, [], []
        if state.changed_from is None:
            return
        start = state.changed_from
        if not self.terms or start < self.base or start > self.base + len(self.terms):
            self.base, self.terms, self.commands = start, [], []
        else:
            del self.terms[start - self.base:]
            del self.commands[start - self.base:]
        for e in state.changed:
            self.terms.append(e.term)
            self.commands.append(e.command)

    def get(self, index: int) -> Optional[Entry]:
        i = index - self.base
        if 0 <= i < len(self.terms):
            return Entry(index, self.terms[i], self.commands[i])
        return None

    @property
    def last_index(self) -> int:
        return self.base + len(self.terms) - 1


class Invariant:
    """One safety property; ``check`` returns the violations this step introduced."""

    name = "invariant"

    def check(self, states: Sequence[NodeState]) -> List[Violation]:
        raise NotImplementedError


class ElectionSafety(Invariant):
    """At most one leader per term over the whole run, across crashes and restarts."""

    name = "election_safety"

    def __init__(self) -> None:
        self.leaders: Dict[int, str] = {}

    def check(self, states):
        out = []
        for s in states:
            if not s.is_leader:
                continue
            first = self.leaders.setdefault(s.term, s.id)
            if first != s.id:
                out.append(Violation(self.name, f"two leaders in term {s.term}: {first} and {s.id}",
                                     nodes=(first, s.id), terms=(s.term,)))
        return out


class LogHistory:
    """Shared memory of logs and commits that several invariants read; updated once per step."""

    def __init__(self) -> None:
        self.mirrors: Dict[Tuple[str, int], _LogMirror] = {}
        self.commit: Dict[Tuple[str, int], int] = {}
        self.committed: Dict[int, Tuple[int, bytes, str]] = {}  # index -> (term, command, first node seen)
        # For leader completeness: per "committed no later than term T", the highest such index.
        # T is the current term of the node first seen holding the entry committed; the leader
        # that committed it had a term <= T, so leaders of terms > T must hold it.
        self.highest_committed_by_term: Dict[int, Tuple[int, int]] = {}  # T -> (index, entry term)
        self.by_index_term: Dict[Tuple[int, int], Tuple[bytes, Optional[int], str]] = {}
        self._new_commits: List[Tuple[int, int, str]] = []

    def add_committed(self, node: str, node_term: int, e: Entry) -> Optional[Tuple[int, bytes, str]]:
        """Record ``e`` as committed by ``node``; returns the earlier record if the index had one."""
        known = self.committed.get(e.index)
        if known is None:
            self.committed[e.index] = (e.term, e.command, node)
            self._new_commits.append((e.index, e.term, node))
            best = self.highest_committed_by_term.get(node_term)
            if best is None or e.index > best[0]:
                self.highest_committed_by_term[node_term] = (e.index, e.term)
        return known

    def highest_committed_before(self, term: int) -> Optional[Tuple[int, int]]:
        """The highest-index entry known committed in a term before ``term``, as (index, entry term)."""
        best = None
        for t, candidate in self.highest_committed_by_term.items():
            if t < term and (best is None or candidate[0] > best[0]):
                best = candidate
        return best

    def take_new_commits(self) -> List[Tuple[int, int, str]]:
        new, self._new_commits = self._new_commits, []
        return new

    def mirror(self, s: NodeState) -> _LogMirror:
        key = (s.id, s.incarnation)
        m = self.mirrors.get(key)
        if m is None:
            for old in [k for k in self.mirrors if k[0] == s.id]:
                del self.mirrors[old]
                self.commit.pop(old, None)
            m = self.mirrors[key] = _LogMirror()
        return m


class LogMatching(Invariant):
    """Two logs with an entry of the same index and term hold the same command and the same prefix.

    Checked by induction: each (index, term) must always carry the same
    command and follow an entry of the same term, so equal entries imply
    equal logs below them (down to the compaction point).
    """

    name = "log_matching"

    def __init__(self, logs: LogHistory) -> None:
        self.logs = logs

    def check(self, states):
        out = []
        for s in states:
            if not s.up or s.changed_from is None:
                continue
            prev_term = s.changed_prev_term
            for e in s.changed:
                key = (e.index, e.term)
                seen = self.logs.by_index_term.setdefault(key, (e.command, prev_term, s.id))
                if seen[1] is None and prev_term is not None:  # first seen at the start of a log
                    self.logs.by_index_term[key] = seen = (seen[0], prev_term, s.id)
                if seen[0] != e.command:
                    out.append(Violation(self.name, f"entry {e} differs between {seen[2]} and {s.id}",
                                         nodes=(seen[2], s.id), terms=(e.term,), indexes=(e.index,)))
                elif prev_term is not None and seen[1] is not None and seen[1] != prev_term:
                    out.append(Violation(
                        self.name, f"entry {e} follows an entry of term {seen[1]} on {seen[2]} "
                        f"but of term {prev_term} on {s.id}: the logs differ below it",
                        nodes=(seen[2], s.id), terms=(e.term, seen[1], prev_term), indexes=(e.index - 1,)))
                prev_term = e.term
        return out


class StateMachineSafety(Invariant):
    """Committed entries never change: no two nodes commit (so apply) different entries at one index,
    a node's commit index never decreases within an incarnation, and never passes its own log."""

    name = "state_machine_safety"

    def __init__(self, logs: LogHistory) -> None:
        self.logs = logs

    def _committed(self, node: str, node_term: int, e: Entry, out: List[Violation]) -> None:
        known = self.logs.add_committed(node, node_term, e)
        if known is not None and (known[0] != e.term or known[1] != e.command):
            out.append(Violation(self.name, f"index {e.index} committed as {e.index}@{known[0]} on {known[2]} "
                                 f"but as {e} on {node}",
                                 nodes=(known[2], node), terms=(known[0], e.term), indexes=(e.index,)))

    def check(self, states):
        out: List[Violation] = []
        for s in states:
            if not s.up:
                continue
            key = (s.id, s.incarnation)
            mirror = self.logs.mirror(s)
            prev = self.logs.commit.get(key)
            mirror.apply(s)
            if prev is not None and s.commit_index < prev:
                out.append(Violation(self.name, f"{s.id} commit index went back from {prev} to {s.commit_index}",
                                     nodes=(s.id,), indexes=(prev, s.commit_index)))
            elif s.commit_fell is not None:
                high, low = s.commit_fell
                out.append(Violation(self.name, f"{s.id} commit index went back from {high} to {low} since "
                                     f"the previous step (now {s.commit_index})",
                                     nodes=(s.id,), indexes=(high, low)))
            if s.commit_index > s.last_index:
                out.append(Violation(self.name, f"{s.id} claims commit index {s.commit_index} "
                                     f"past its last log index {s.last_index}",
                                     nodes=(s.id,), indexes=(s.commit_index, s.last_index)))
            # Entries rewritten at or below the old commit index, and entries newly committed.
            lo = 1 if prev is None else prev + 1
            if s.changed_from is not None and s.changed_from < lo:
                lo = s.changed_from
            for index in range(max(lo, mirror.base), min(s.commit_index, mirror.last_index) + 1):
                self._committed(s.id, s.term, mirror.get(index), out)
            self.logs.commit[key] = max(s.commit_index, prev or 0)
        return out


class LeaderCompleteness(Invariant):
    """An entry committed in term T is in the log of every leader of a later term."""

    name = "leader_completeness"

    def __init__(self, logs: LogHistory) -> None:
        self.logs = logs
        self.seen: set = set()

    def check(self, states):
        out = []
        for s in states:
            if not s.is_leader or (s.term, s.id) in self.seen:
                continue
            self.seen.add((s.term, s.id))
            latest = self.logs.highest_committed_before(s.term)
            if latest is None:
                continue
            index, term = latest
            if index < s.first_index:
                continue  # inside the leader's snapshot, which holds only committed state
            entry = self.logs.mirror(s).get(index)
            if entry is None or entry.term != term:
                have = "nothing" if entry is None else str(entry)
                out.append(Violation(self.name, f"{s.id} became leader of term {s.term} without "
                                     f"entry {index}@{term}, committed in an earlier term (it has {have})",
                                     nodes=(s.id,), terms=(s.term, term), indexes=(index,)))
        return out


class Durability(Invariant):
    """A write acknowledged as committed keeps its log slot forever, across crashes and restarts.

    Each acknowledged write's (index, term) must match whatever any node has
    committed at that index, whether that commit is seen before or after the
    acknowledgement, and two writes acknowledged at one index must agree.
    Fed the newly completed operations by :meth:`acknowledge`.
    """

    name = "durability"

    def __init__(self, logs: LogHistory) -> None:
        self.logs = logs
        self.acked: Dict[int, List[Tuple[int, Operation]]] = {}
        self._fresh: List[Tuple[int, int, Operation]] = []
        self._reported: set = set()

    def acknowledge(self, ops: Iterable[Operation]) -> None:
        for op in ops:
            if op.kind == WRITE and op.outcome == OK and op.index is not None:
                self.acked.setdefault(op.index, []).append((op.term, op))
                self._fresh.append((op.index, op.term, op))

    def check(self, states):
        out: List[Violation] = []
        for index, term, node in self.logs.take_new_commits():
            for acked_term, op in self.acked.get(index, ()):
                self._compare(index, acked_term, op, term, node, node, out)
        for index, acked_term, op in self._fresh:
            known = self.logs.committed.get(index)
            if known is not None:
                self._compare(index, acked_term, op, known[0], known[2], known[2], out)
            for other_term, other in self.acked[index]:
                if other_term != acked_term and other.id < op.id:
                    self._compare(index, other_term, other, acked_term, op.via, f"the ack of #{op.id}", out)
        self._fresh = []
        return out

    def _compare(self, index: int, acked_term: int, op: Operation, term: int, node: str, where: str,
                 out: List[Violation]) -> None:
        if acked_term == term or (op.id, term) in self._reported:
            return
        self._reported.add((op.id, term))
        out.append(Violation(self.name, f"acknowledged {op} was at {index}@{acked_term}, but {where} "
                             f"has {index}@{term} there", nodes=(op.via, node),
                             terms=(acked_term, term), indexes=(index,)))


class NoNodeErrors(Invariant):
    """No exception escapes pysyncobj code inside any node."""

    name = "no_node_errors"

    def __init__(self) -> None:
        self._seen = 0
        self.errors: Sequence = ()

    def check(self, states):
        new = self.errors[self._seen:]
        self._seen = len(self.errors)
        return [Violation(self.name, str(e), nodes=(e.node,)) for e in new]


class SafetyChecker:
    """Every safety invariant over one run; call :meth:`step` after each step of the run.

    ``stream=False`` judges the node states sampled at the end of each step.
    ``stream=True`` judges every event the cluster recorded during the step
    (``Cluster(record_events=True)``, :mod:`harness.check.stream`): the same
    properties, plus ``vote_safety``, each checked at the instant it could
    break, and reported with the event that broke it.
    """

    def __init__(self, stream: bool = False) -> None:
        self.stream = stream
        self.node_errors = NoNodeErrors()
        if stream:
            from harness.check import stream as _stream  # it builds on this module

            self.logs: LogHistory = _stream.StreamHistory()
            self.durability = Durability(self.logs)
            self.invariants: List[Invariant] = [*_stream.stream_invariants(self.logs), self.durability,
                                                self.node_errors]
            self._handlers = _stream.dispatch([self.logs] + [i for i in self.invariants
                                                             if isinstance(i, _stream.StreamInvariant)])
        else:
            self.logs = LogHistory()
            self.durability = Durability(self.logs)
            self.invariants = [
                ElectionSafety(),
                LogMatching(self.logs),
                StateMachineSafety(self.logs),
                LeaderCompleteness(self.logs),
                self.durability,
                self.node_errors,
            ]
        self.steps = 0

    def step(self, states: Sequence[NodeState], completed: Iterable[Operation] = (),
             node_errors: Optional[Sequence] = None, events: Optional[Sequence] = None) -> None:
        """Check one step; raises :class:`SafetyViolation` listing everything it broke.

        ``node_errors`` is the cluster's whole (growing) list of NodeErrors; None keeps the last one.
        ``events``: what the cluster recorded during the step (``Cluster.take_events()``), required by a
        stream checker and refused by a sampling one.
        """
        if (events is not None) != self.stream:
            raise ValueError("a SafetyChecker(stream=True) needs the step's events, a sampling one takes none")
        self.steps += 1
        self.durability.acknowledge(completed)
        if node_errors is not None:
            self.node_errors.errors = node_errors
        violations: List[Violation] = []
        if events:
            handlers = self._handlers
            for e in events:
                for handle in handlers.get(type(e), ()):
                    handle(e, violations)
        for inv in self.invariants:
            violations.extend(inv.check(states))
        if violations:
            raise SafetyViolation(violations)
