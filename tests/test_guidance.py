"""The guidance measures of :mod:`harness.fuzz.guidance`, each computed on hand-built states and events, and
the machine's use of them: one ``target()`` per label per example, and none outside a Hypothesis test.

A measure that scored the wrong thing would steer the target phase somewhere useless without failing
anything, so every measure gets a sequence with a known score, including the events it must not count.
"""
from __future__ import annotations

from typing import Dict, List

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis.stateful import run_state_machine_as_test

from harness.check.events import (Crashed, EntryWritten, Handling, LeaderElected, LogCompacted, LogTruncated,
                                  SnapshotInstalled, Started, VoteGranted, digest)
from harness.fuzz import guidance, profiles
from harness.fuzz.guidance import Guidance, parse_targets
from harness.fuzz.machine import RaftMachine
from harness.history import History, OK
from harness.state import Entry, NodeState

MSG = Handling("message", 7, "n1", "n2", "append_entries")
SNAPSHOT = Handling("message", 8, "n1", "n2", "snapshot")
TICK = Handling("tick")
START = Handling("start")


def entry(index: int, term: int) -> Entry:
    return Entry(index, term, digest(b"%d" % index))


def node(node_id: str, term: int = 1, commit: int = 0, up: bool = True, voter: bool = True) -> NodeState:
    return NodeState(id=node_id, incarnation=1, up=up, voter=voter, role="follower", term=term, voted_for=None,
                     leader=None, commit_index=commit, last_applied=commit, first_index=1, last_index=commit,
                     last_term=term)


def score(name: str, *steps, history: History = None) -> int:
    """Feed ``steps`` (``(states, events)`` pairs) to a Guidance of one measure and return its score."""
    g = Guidance((name,))
    for states, events in steps:
        g.step(states, events, history)
    return g.scores[name]


def test_every_measure_is_documented_and_unknown_names_are_refused() -> None:
    assert all(m.description and m.name == name for name, m in guidance.MEASURES.items())
    assert parse_targets("none") == () == parse_targets("")
    assert parse_targets("max_term, commit_spread") == ("max_term", "commit_spread")
    assert parse_targets("all") == tuple(guidance.MEASURES) and len(guidance.MEASURES) == 7
    with pytest.raises(ValueError, match="max_terms"):
        parse_targets("max_terms")
    assert set(RaftMachine.guidance_targets) <= set(guidance.MEASURES)


def test_max_term_takes_events_and_up_nodes_but_not_crashed_ones() -> None:
    crashed = node("n3", term=9, up=False)
    events = [VoteGranted(0.1, "n1", 1, MSG, 5, "n2"), LeaderElected(0.2, "n2", 1, MSG, 4)]
    assert score("max_term", ([node("n1", term=3), crashed], events)) == 5
    assert score("max_term", ([node("n1", term=3)], []), ([node("n1", term=2)], [])) == 3


def test_leader_changes_count_a_new_winner_not_a_reelection() -> None:
    events = [LeaderElected(0.1, "n1", 1, MSG, 1), LeaderElected(0.2, "n1", 1, MSG, 2),
              LeaderElected(0.3, "n2", 1, MSG, 3)]
    assert score("leader_changes", ([], events[:2]), ([], events[2:]), ([], [LeaderElected(0.4, "n1", 1, MSG, 4)])) == 2


def test_lagging_snapshots_count_only_snapshots_received_from_a_leader() -> None:
    events = [SnapshotInstalled(0.1, "n2", 1, SNAPSHOT), SnapshotInstalled(0.2, "n3", 1, TICK),
              SnapshotInstalled(0.3, "n2", 1, SNAPSHOT)]
    assert score("lagging_snapshots", ([], events)) == 2


def test_follower_truncations_count_the_entries_deleted() -> None:
    log = (entry(1, 0), entry(2, 1), entry(3, 1))
    events = [Started(0.0, "n2", 1, START, 1, None, log, True),
              EntryWritten(0.1, "n2", 1, MSG, entry(4, 1), 1),
              LogTruncated(0.2, "n2", 1, MSG, 3, 2),          # 3@1 and 4@1 go
              EntryWritten(0.3, "n2", 1, MSG, entry(3, 2), 1),
              LogCompacted(0.4, "n2", 1, TICK, 3, 2),          # compaction deletes nothing that conflicted
              LogTruncated(0.5, "n2", 1, MSG, 4, 1),           # log is 3@2 alone: nothing after it goes
              Crashed(0.6, "n2", 1, MSG),
              Started(0.7, "n2", 2, START, 2, None, log, True),
              LogTruncated(0.8, "n2", 2, MSG, 2, 1)]           # 2@1 and 3@1 of the new incarnation
    assert score("follower_truncations", ([], events[:4]), ([], events[4:])) == 4


def test_forwards_at_a_leader_change_count_unanswered_commands_not_sent_to_the_deposed_leader() -> None:
    h = History()
    through_follower = h.invoke("write", "a", 1, "n2", 0.5)          # forwarded to n1, unanswered at 1.0
    h.invoke("write", "a", 2, "n1", 0.6)                             # sent to the deposed leader itself
    answered = h.invoke("write", "a", 3, "n3", 0.7)
    h.finish(answered, OK, None, 0.8)                                # answered before the change
    late = h.invoke("write", "a", 4, "n3", 0.9)
    h.finish(late, OK, None, 1.5)                                    # still pending at 1.0
    after = h.invoke("write", "a", 5, "n3", 1.2)                     # sent after the change: next window
    assert through_follower.complete is None and after.invoke > 1.0
    events = [LeaderElected(0.1, "n1", 1, MSG, 1), LeaderElected(1.0, "n2", 1, MSG, 2)]
    assert score("forwards_at_leader_change", ([], events), history=h) == 2
    again = [LeaderElected(2.0, "n3", 1, MSG, 3)]                    # 'after' was sent via n3, n2 is deposed
    assert score("forwards_at_leader_change", ([], events), ([], again), history=h) == 3


def test_voter_restarts_count_restarts_of_nodes_that_voted_in_the_highest_term() -> None:
    events = [Started(0.0, "n1", 1, START, 0, None, (), True),        # a first start is no restart
              VoteGranted(0.1, "n1", 1, MSG, 2, "n2"),
              VoteGranted(0.1, "n3", 1, MSG, 1, "n3"),
              Crashed(0.2, "n1", 1, MSG), Crashed(0.2, "n3", 1, MSG),
              Started(0.3, "n1", 2, START, 2, "n2", (), True),        # voted in term 2, the highest: counts
              Started(0.3, "n3", 2, START, 1, "n3", (), True),        # voted in term 1 only
              LeaderElected(0.4, "n2", 1, MSG, 3),
              Crashed(0.5, "n1", 2, MSG), Started(0.6, "n1", 3, START, 2, "n2", (), True)]  # term 3 now
    assert score("voter_restarts", ([], events)) == 1


def test_commit_spread_is_over_up_voters_at_a_step_end() -> None:
    first = [node("n1", commit=9), node("n2", commit=4), node("n3", commit=0, up=False),
             node("r1", commit=1, voter=False)]
    assert score("commit_spread", (first, []), ([node("n1", commit=9), node("n2", commit=9)], [])) == 5


def test_no_target_outside_a_test_and_one_per_label_inside(monkeypatch) -> None:
    calls: List[tuple] = []
    monkeypatch.setattr(guidance, "target", lambda value, label: calls.append((label, value)))
    g = Guidance(("max_term", "commit_spread"))
    g.step([node("n1", term=4, commit=3), node("n2", term=4, commit=1)], [])
    g.target()
    assert calls == []  # not in a Hypothesis test: harmless, nothing reported

    @settings(max_examples=3, database=None, phases=[Phase.generate])
    @given(st.integers(1, 9))
    def example(term: int) -> None:
        h = Guidance(("max_term", "commit_spread"))
        h.step([node("n1", term=term, commit=2), node("n2", term=1, commit=0)], [])
        h.target()
        h.target()  # a second call in one example must not report again (Hypothesis would refuse it)

    example()
    per_example = [calls[i:i + 2] for i in range(0, len(calls), 2)]
    assert len(calls) == 6 and all([label for label, _ in pair] == ["max_term", "commit_spread"]
                                   for pair in per_example)
    assert all(dict(pair)["commit_spread"] == 2 for pair in per_example)


class _Guided(RaftMachine):
    guidance_targets = ("max_term", "leader_changes", "commit_spread")


def test_the_machine_reports_each_target_once_per_example(monkeypatch) -> None:
    seen: List[Dict[str, int]] = [{}]

    def record(value, label) -> None:
        assert label not in seen[-1], f"target {label!r} reported twice in one example"
        seen[-1][label] = value

    monkeypatch.setattr(guidance, "target", record)
    teardown = _Guided.teardown

    def end_example(self) -> None:
        teardown(self)
        seen.append({})

    monkeypatch.setattr(_Guided, "teardown", end_example)
    run_state_machine_as_test(_Guided, settings=settings(max_examples=3, stateful_step_count=3, database=None,
                                                         phases=[Phase.generate], deadline=None,
                                                         suppress_health_check=list(HealthCheck)))
    examples = [s for s in seen if s]
    # At least max_examples: an example Hypothesis abandons (its data ran out) does not count toward them
    # but runs its teardown, and reports its targets like any other.
    assert len(examples) >= 3 and all(set(s) == set(_Guided.guidance_targets) for s in examples)


def test_the_fuzz_profile_runs_the_target_phase() -> None:
    profiles.register()
    assert Phase.target in settings.get_profile("raft-fuzz").phases
