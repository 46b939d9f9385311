"""Guidance toward rare states: protocol measures a fuzzing example reports to Hypothesis' ``target()``.

Why: uniformly random rule sequences rarely reach the states where Raft implementations break: many
leader changes, a follower whose log gets cut back, a snapshot sent to a node that fell behind, client
commands forwarded to a leader that is deposed before it answers, a node restarted right after it
voted, followers far behind the leader's commit index.  Hypothesis uses ``target()`` scores twice: from
the first example on, the generate phase keeps a mutation of an example (it copies one part of the
choice sequence over another) only if no score went down, and the target phase (``Phase.target``, which
the ``raft-fuzz`` profile runs) hill-climbs from the examples that scored highest on a label, once a
test has run ~200 valid examples (Hypothesis 6.170), alternating with generation.  Each measure below
is one label, computed from what the machine already observes after every step: the node states, the
step's events (:mod:`harness.check.events`) and the client history.

:class:`harness.fuzz.machine.RaftMachine` feeds :meth:`Guidance.step` after every step and calls
:meth:`Guidance.target` from its teardown; its ``guidance_targets`` class attribute names the measures,
none by default: on 10 paired campaigns of ``bench/bench_time_to_find.py`` (README, "Time to find") all
seven together helped on 2, hurt on 5 and changed nothing on 3.
Outside a Hypothesis test (triage, the minimiser, a replay by hand) nothing is reported.  The event
measures need a machine that records events (``stream_checks``); without events they stay at 0.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple, Type

from hypothesis import target
from hypothesis.control import currently_in_test_context

from harness.check.events import (Crashed, EntryWritten, Event, LeaderElected, LogCompacted, LogReloaded,
                                  LogTruncated, SnapshotInstalled, Started, VoteGranted)
from harness.history import History
from harness.state import NodeState

_Key = Tuple[str, int]  # (node, incarnation)


class Measure:
    """One score of one example: starts at 0, updated after every step; higher is rarer."""

    name = ""
    description = ""

    def __init__(self) -> None:
        self.score = 0

    def step(self, states: Sequence[NodeState], events: Sequence[Event], history: Optional[History]) -> None:
        raise NotImplementedError


class MaxTerm(Measure):
    name = "max_term"
    description = "the highest term any node reached (elections, also failed ones)"

    def step(self, states, events, history) -> None:
        terms = [s.term for s in states if s.up]
        terms += [e.term for e in events if isinstance(e, (LeaderElected, VoteGranted, Started))]
        self.score = max([self.score, *terms])


class _Leaders:
    """Elections won by a node other than the last winner: ``(time, deposed, new)`` per change."""

    def __init__(self) -> None:
        self.last: Optional[str] = None

    def changes(self, events: Iterable[Event]) -> Iterable[Tuple[float, str, str]]:
        for e in events:
            if isinstance(e, LeaderElected):
                if self.last not in (None, e.node):
                    yield e.time, self.last, e.node
                self.last = e.node


class LeaderChanges(Measure):
    name = "leader_changes"
    description = "elections won by a node other than the previous leader"

    def __init__(self) -> None:
        super().__init__()
        self._leaders = _Leaders()

    def step(self, states, events, history) -> None:
        self.score += sum(1 for _ in self._leaders.changes(events))


class LaggingSnapshots(Measure):
    name = "lagging_snapshots"
    description = "snapshots a node installed from a leader's message (it lagged behind the leader's log start)"

    def step(self, states, events, history) -> None:
        self.score += sum(1 for e in events if isinstance(e, SnapshotInstalled) and e.handling.activity == "message")


class FollowerTruncations(Measure):
    name = "follower_truncations"
    description = "log entries deleted from a follower's log because they conflicted with the leader's"

    def __init__(self) -> None:
        super().__init__()
        self._length: Dict[_Key, int] = {}

    def step(self, states, events, history) -> None:
        length = self._length
        for e in events:
            key = (e.node, e.incarnation)
            if isinstance(e, (Started, LogReloaded)):
                length[key] = len(e.log)
            elif isinstance(e, EntryWritten):
                length[key] = length.get(key, 0) + 1
            elif isinstance(e, LogTruncated):
                self.score += max(0, length.get(key, 0) - e.keep)
                length[key] = e.keep
            elif isinstance(e, LogCompacted):
                length[key] = max(0, length.get(key, 0) - e.drop)
            elif isinstance(e, SnapshotInstalled):
                length[key] = 0
            elif isinstance(e, Crashed):
                length.pop(key, None)


class ForwardsAtLeaderChange(Measure):
    name = "forwards_at_leader_change"
    description = ("client commands sent through a node other than the leader (so forwarded to it) and still "
                   "unanswered when another node won an election")

    def __init__(self) -> None:
        super().__init__()
        self._leaders = _Leaders()
        self._cursor = 0  # history index of the first command sent since the last leader change

    def step(self, states, events, history) -> None:
        if history is None:
            return
        for at, deposed, _new in self._leaders.changes(events):
            while self._cursor < len(history) and history[self._cursor].invoke <= at:
                op = history[self._cursor]
                self._cursor += 1
                if op.via != deposed and (op.complete is None or op.complete >= at):
                    self.score += 1


class VoterRestarts(Measure):
    name = "voter_restarts"
    description = "restarts of a node that had voted in the highest term any node had reached"

    def __init__(self) -> None:
        super().__init__()
        self._voted: Dict[str, int] = {}  # node -> the last term it voted in
        self._term = 0

    def step(self, states, events, history) -> None:
        for e in events:
            if isinstance(e, VoteGranted):
                self._voted[e.node] = e.term
            elif isinstance(e, Started):
                if self._voted.get(e.node, -1) >= self._term:
                    self.score += 1
                if e.voted_for is not None:
                    self._voted[e.node] = e.term
            if isinstance(e, (VoteGranted, LeaderElected, Started)):
                self._term = max(self._term, e.term)


class CommitSpread(Measure):
    name = "commit_spread"
    description = "the widest gap between the highest and the lowest commit index of the up voters after a step"

    def step(self, states, events, history) -> None:
        commits = [s.commit_index for s in states if s.up and s.voter]
        if commits:
            self.score = max(self.score, max(commits) - min(commits))


#: Every measure by name.
MEASURES: Dict[str, Type[Measure]] = {m.name: m for m in (
    MaxTerm, LeaderChanges, LaggingSnapshots, FollowerTruncations, ForwardsAtLeaderChange, VoterRestarts,
    CommitSpread)}

#: What RaftMachine targets by default: nothing (README, "Time to find", for the measurement behind it).
DEFAULT_TARGETS: Tuple[str, ...] = ()


def parse_targets(text: str) -> Tuple[str, ...]:
    """``"max_term,leader_changes"`` -> those names; ``"all"`` -> every measure; ``"none"`` or ``""`` -> ();
    ValueError naming an unknown one."""
    if text.strip() == "all":
        return tuple(MEASURES)
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise ValueError(f"unknown guidance measure(s) {unknown}; known: {', '.join(MEASURES)}")
    return names


class Guidance:
    """The measures ``targets`` names for one example: fed after every step, reported once at its end."""

    def __init__(self, targets: Sequence[str] = DEFAULT_TARGETS) -> None:
        self.measures = [MEASURES[name]() for name in parse_targets(",".join(targets))]
        self._reported = False

    def step(self, states: Sequence[NodeState], events: Optional[Sequence[Event]] = None,
             history: Optional[History] = None) -> None:
        """One step's end: its node states, the events it recorded (None: none) and the client history."""
        for m in self.measures:
            m.step(states, events or (), history)

    @property
    def scores(self) -> Dict[str, int]:
        return {m.name: m.score for m in self.measures}

    def target(self) -> None:
        """Report every score to Hypothesis, once per label per example, and only inside a test."""
        if self._reported or not currently_in_test_context():
            return
        self._reported = True
        for m in self.measures:
            target(m.score, label=m.name)
