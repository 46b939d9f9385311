"""The stream checkers of :mod:`harness.check.stream` on hand-built event sequences.

Each property gets a sequence that breaks it and a close one that does not;
the violations must name the event that broke the property (time, node, what
it was handling).  The recorder that produces such sequences from a real
cluster is tested in ``tests/test_events.py``.
"""
from __future__ import annotations

from typing import List, Sequence

import pytest

from harness.check.events import (Applied, CommitChanged, Crashed, EntryWritten, Handling, LeaderElected,
                                  LogCompacted, LogTruncated, MatchRaised, SnapshotInstalled, Started, VoteGranted,
                                  digest)
from harness.check.invariants import SafetyChecker, SafetyViolation, Violation
from harness.state import Entry

MSG = Handling("message", 42, "n3", "n1", "append_entries")
REPLY = Handling("message", 43, "n2", "n1", "next_node_idx")


def E(index: int, term: int, command: bytes = b"") -> Entry:
    return Entry(index, term, digest(command or b"cmd %d" % index))


class Stream:
    """Builds events of one run; time moves on by a millisecond per event."""

    def __init__(self) -> None:
        self.events: list = []
        self.t = 0.0
        self.inc = {}

    def _add(self, cls, node, *fields, handling=MSG):
        self.t += 0.001
        self.events.append(cls(self.t, node, self.inc.get(node, 1), handling, *fields))
        return self

    def start(self, node, log=(E(1, 0, b"\x01"),), term=0, vote=None, durable=True):
        self.inc[node] = self.inc.get(node, 0) + 1
        return self._add(Started, node, term, vote, tuple(log), durable, handling=Handling("start"))

    def crash(self, node):
        return self._add(Crashed, node)

    def elected(self, node, term, voters=()):
        return self._add(LeaderElected, node, term, tuple(voters))

    def vote(self, node, term, candidate):
        return self._add(VoteGranted, node, term, candidate)

    def write(self, node, entry, prev_term):
        return self._add(EntryWritten, node, entry, prev_term)

    def truncate(self, node, from_index, keep):
        return self._add(LogTruncated, node, from_index, keep)

    def compact(self, node, first_index, drop):
        return self._add(LogCompacted, node, first_index, drop)

    def commit(self, node, old, new, term, last_index, entries, leader=False):
        return self._add(CommitChanged, node, old, new, term, last_index, tuple(entries), leader)

    def applied(self, node, old, new, term, entries):
        return self._add(Applied, node, old, new, term, tuple(entries))

    def matched(self, leader, term, follower, index, follower_term, up=True):
        inc = self.inc.get(follower, 1) if up else None
        return self._add(MatchRaised, leader, term, follower, index, inc, follower_term if up else None,
                         handling=REPLY)


def judge(events: Sequence, checker: SafetyChecker = None) -> List[Violation]:
    checker = checker or SafetyChecker(stream=True)
    try:
        checker.step([], events=list(events))
    except SafetyViolation as e:
        return list(e.violations)
    return []


def names(violations) -> List[str]:
    return sorted({v.invariant for v in violations})


def three_nodes() -> Stream:
    s = Stream()
    for n in ("n1", "n2", "n3"):
        s.start(n)
    return s


# --- election_safety --------------------------------------------------------------------------------
def test_two_leaders_of_one_term_are_caught_when_the_second_is_elected():
    s = three_nodes().elected("n1", 2).elected("n2", 3).elected("n3", 2)
    [v] = judge(s.events)
    assert (v.invariant, v.nodes, v.terms) == ("election_safety", ("n1", "n3"), (2,))
    assert (v.at, v.node, v.handling) == (s.events[-1].time, "n3", "append_entries #42 n3->n1")
    assert "at t=0.006000 on n3 handling append_entries #42 n3->n1" in str(v)


def test_one_leader_per_term_passes():
    assert judge(three_nodes().elected("n1", 2).elected("n2", 3).elected("n1", 4).events) == []


def test_a_second_leader_in_a_later_step_is_still_caught():
    checker = SafetyChecker(stream=True)
    assert judge(three_nodes().elected("n1", 5).events, checker) == []
    assert names(judge(Stream().elected("n2", 5).events, checker)) == ["election_safety"]


# --- vote_safety ------------------------------------------------------------------------------------
def test_a_second_vote_in_one_term_is_caught():
    s = three_nodes().vote("n1", 3, "n1").vote("n1", 3, "n2")
    [v] = judge(s.events)
    assert (v.invariant, v.nodes, v.terms, v.node) == ("vote_safety", ("n1", "n2"), (3,), "n1")
    assert "n1 voted twice in term 3: for n1 and for n2" in v.message


def test_one_vote_per_term_passes():
    s = three_nodes().vote("n1", 3, "n2").vote("n1", 3, "n2").vote("n1", 4, "n3").vote("n2", 3, "n3")
    assert judge(s.events) == []


def test_a_stored_vote_binds_the_next_incarnation():
    s = three_nodes().vote("n1", 3, "n2").crash("n1").start("n1", term=3, vote="n2").vote("n1", 3, "n3")
    [v] = judge(s.events)
    assert v.invariant == "vote_safety" and "in incarnation 1, now 2" in v.message


def test_a_vote_forgotten_by_a_release_that_does_not_store_it_is_not_a_vote_violation():
    """pysyncobj before 0.3.16 (FINDINGS.md #4): a restarted node may vote again in the same term."""
    s = Stream()
    for n in ("n1", "n2", "n3"):
        s.start(n, durable=False)
    s.vote("n1", 3, "n2").crash("n1").start("n1", term=0, durable=False).vote("n1", 3, "n3")
    assert judge(s.events) == []


# --- election_quorum -----------------------------------------------------------------------------
VOTERS = ("n1", "n2", "n3")


def test_a_leader_with_the_votes_of_a_majority_in_its_term_passes():
    s = three_nodes().vote("n1", 2, "n1").vote("n3", 2, "n1").elected("n1", 2, VOTERS)
    assert judge(s.events) == []


def test_a_vote_of_an_earlier_term_does_not_count():
    s = three_nodes().vote("n1", 1, "n1").vote("n2", 1, "n1").vote("n1", 2, "n1").vote("n2", 2, "n3")
    [v] = judge(s.elected("n1", 2, VOTERS).events)
    assert (v.invariant, v.node, v.terms) == ("election_quorum", "n1", (2,))
    assert "with the votes of n1 in that term, 1 of the 3 voters" in v.message and v.at == s.events[-1].time


def test_votes_from_outside_the_configuration_do_not_count():
    s = three_nodes().vote("n1", 2, "n1").vote("n4", 2, "n1").vote("n5", 2, "n1")
    assert names(judge(s.elected("n1", 2, VOTERS).events)) == ["election_quorum"]


def test_half_of_an_even_configuration_is_not_a_majority():
    s = three_nodes().vote("n1", 2, "n1").vote("n2", 2, "n1")
    assert names(judge(s.elected("n1", 2, VOTERS + ("n4",)).events)) == ["election_quorum"]


def test_a_vote_given_before_a_crash_counts_and_an_unknown_configuration_is_not_judged():
    s = three_nodes().vote("n1", 2, "n1").vote("n2", 2, "n1").crash("n2").elected("n1", 2, VOTERS)
    assert judge(s.events) == []
    assert judge(three_nodes().elected("n1", 2).events) == []


# --- log_matching -----------------------------------------------------------------------------------
def test_one_index_and_term_with_two_commands_is_caught():
    s = three_nodes().write("n1", E(2, 1, b"a"), 0).write("n2", E(2, 1, b"b"), 0)
    [v] = judge(s.events)
    assert (v.invariant, v.nodes, v.indexes, v.node) == ("log_matching", ("n1", "n2"), (2,), "n2")


def test_equal_entries_after_different_terms_are_caught():
    s = three_nodes().write("n1", E(3, 2), 1).write("n2", E(3, 2), 2)
    assert names(judge(s.events)) == ["log_matching"]


def test_a_started_log_is_matched_too():
    s = three_nodes().write("n1", E(2, 1, b"a"), 0).crash("n2").start("n2", log=[E(1, 0, b"\x01"), E(2, 1, b"b")])
    assert names(judge(s.events)) == ["log_matching"]


def test_matching_logs_pass():
    s = three_nodes().write("n1", E(2, 1), 0).write("n2", E(2, 1), 0).write("n3", E(2, 1), 0)
    assert judge(s.events) == []


# --- state_machine_safety -----------------------------------------------------------------------------
def _compacted_mirror_run(n1_entries_at_commit) -> Stream:
    """The false-positive recording in small: n1, an isolated leader of term 1, wrote 4@1..7@1 at commit 3;
    after the heal one append_entries replaced them by 4@2..8@2 and set commit 8; n1 then compacted."""
    s = three_nodes()
    for n in ("n1", "n2", "n3"):
        for i in (2, 3):
            s.write(n, E(i, 1), 1 if i > 2 else 0)
        s.commit(n, None, 3, 1, 3, [E(1, 0, b"\x01"), E(2, 1), E(3, 1)])
    for i in range(4, 8):
        s.write("n1", E(i, 1, b"stale %d" % i), 1)
    for n in ("n2", "n3"):
        for i in range(4, 9):
            s.write(n, E(i, 2), 1 if i == 4 else 2)
        s.commit(n, 3, 8, 2, 8, [E(i, 2) for i in range(4, 9)])
    s.truncate("n1", 4, 3)
    for i in range(4, 9):
        s.write("n1", E(i, 2), 1 if i == 4 else 2)
    s.commit("n1", 3, 8, 2, 8, n1_entries_at_commit)
    return s.compact("n1", 7, 6)


def test_an_entry_is_judged_as_the_log_held_it_when_it_was_committed():
    assert judge(_compacted_mirror_run([E(i, 2) for i in range(4, 9)]).events) == []


def test_committing_another_entry_at_a_committed_index_is_caught():
    s = _compacted_mirror_run([E(4, 1, b"stale 4")] + [E(i, 2) for i in range(5, 9)])
    [v] = judge(s.events)
    assert (v.invariant, v.nodes, v.terms, v.indexes) == ("state_machine_safety", ("n2", "n1"), (2, 1), (4,))
    assert "index 4 committed as 4@2 on n2 but as 4@1 on n1" in v.message


def test_applying_another_entry_than_the_committed_one_is_caught():
    s = three_nodes().commit("n1", None, 2, 1, 2, [E(2, 1, b"a")]).applied("n2", None, 2, 1, [E(2, 1, b"b")])
    assert names(judge(s.events)) == ["state_machine_safety"]


def test_a_commit_and_its_apply_report_one_wrong_entry_once():
    s = three_nodes().commit("n1", None, 2, 1, 2, [E(2, 1, b"a")])
    s.commit("n2", None, 2, 1, 2, [E(2, 1, b"b")]).applied("n2", None, 2, 1, [E(2, 1, b"b")])
    assert len(judge(s.events)) == 1


def test_rewriting_a_committed_index_is_caught_at_the_write():
    s = three_nodes().commit("n1", None, 2, 1, 2, [E(2, 1)]).commit("n2", None, 2, 1, 2, [E(2, 1)])
    s.truncate("n2", 2, 1).write("n2", E(2, 3, b"other"), 0)
    [v] = judge(s.events)
    assert (v.invariant, v.node, v.at) == ("state_machine_safety", "n2", s.events[-1].time)


def test_rewriting_a_committed_index_with_the_same_entry_passes():
    s = three_nodes().commit("n1", None, 2, 1, 2, [E(2, 1)]).commit("n2", None, 2, 1, 2, [E(2, 1)])
    assert judge(s.truncate("n2", 2, 1).write("n2", E(2, 1), 0).events) == []


@pytest.mark.parametrize("kind", ["commit", "applied"])
def test_an_index_going_back_within_an_incarnation_is_caught(kind):
    s = three_nodes()
    if kind == "commit":
        s.commit("n1", None, 5, 1, 5, []).commit("n1", 5, 4, 1, 5, [])
    else:
        s.applied("n1", None, 5, 1, []).applied("n1", 5, 4, 1, [])
    [v] = judge(s.events)
    assert (v.invariant, v.indexes) == ("state_machine_safety", (5, 4))


def test_a_new_incarnation_may_start_lower():
    s = three_nodes().commit("n1", None, 5, 1, 5, []).crash("n1").start("n1").commit("n1", None, 1, 1, 1, [])
    assert judge(s.events) == []


def test_a_commit_index_past_the_log_is_caught():
    [v] = judge(three_nodes().commit("n1", None, 6, 1, 4, []).events)
    assert "claims commit index 6 past its last log index 4" in v.message


# --- leader_completeness ---------------------------------------------------------------------------
def _committed_in_term_1() -> Stream:
    s = three_nodes()
    for n in ("n1", "n2"):
        s.write(n, E(2, 1), 0)
    return s.commit("n1", 1, 2, 1, 2, [E(2, 1)])


def test_a_leader_elected_without_a_committed_entry_is_caught_when_elected():
    s = _committed_in_term_1().elected("n3", 2)
    [v] = judge(s.events)
    assert (v.invariant, v.node, v.indexes, v.terms) == ("leader_completeness", "n3", (2,), (2, 1))
    assert "it has nothing" in v.message


def test_a_leader_holding_the_committed_entries_passes():
    assert judge(_committed_in_term_1().elected("n2", 2).events) == []


def test_the_leaders_log_at_the_election_is_what_counts():
    """n2 held 2@1 when it was elected; losing it afterwards is another property's business."""
    s = _committed_in_term_1().elected("n2", 2).truncate("n2", 2, 1)
    assert judge(s.events) == []
    s = _committed_in_term_1().truncate("n2", 2, 1).elected("n2", 2)
    assert names(judge(s.events)) == ["leader_completeness"]


def test_an_entry_inside_the_leaders_snapshot_passes():
    s = _committed_in_term_1()
    s.events.append(SnapshotInstalled(s.t, "n3", 1, MSG))
    s.write("n3", E(3, 1), None).write("n3", E(4, 1), 1).elected("n3", 2)
    assert judge(s.events) == []


# --- leader_commit_rule ------------------------------------------------------------------------------
def _leader_of_term_3_with_entries_of_term_2() -> Stream:
    """n1 holds 2@2 and 3@2 (uncommitted) and is leader of term 3; its no-op is 4@3."""
    s = three_nodes()
    s.write("n1", E(2, 2), 0).write("n1", E(3, 2), 2).elected("n1", 3).write("n1", E(4, 3, b"\x01"), 2)
    return s


def test_a_leader_committing_an_entry_of_an_earlier_term_by_counting_is_caught():
    s = _leader_of_term_3_with_entries_of_term_2().commit("n1", 1, 3, 3, 4, [E(2, 2), E(3, 2)], leader=True)
    [v] = judge(s.events)
    assert (v.invariant, v.node, v.indexes, v.terms) == ("leader_commit_rule", "n1", (3,), (3, 2))
    assert "onto 3@2 of an earlier term" in v.message and v.at == s.events[-1].time


def test_a_leader_committing_older_entries_with_one_of_its_own_passes():
    s = _leader_of_term_3_with_entries_of_term_2()
    s.commit("n1", 1, 4, 3, 4, [E(2, 2), E(3, 2), E(4, 3, b"\x01")], leader=True)
    assert judge(s.events) == []


def test_a_follower_following_its_leaders_commit_onto_an_older_entry_passes():
    s = three_nodes().write("n2", E(2, 2), 0).write("n2", E(3, 2), 2)
    assert judge(s.commit("n2", 1, 3, 3, 3, [E(2, 2), E(3, 2)]).events) == []


def test_the_first_commit_index_of_an_incarnation_is_not_judged():
    """Loaded from its files on the first tick, it was counted by some earlier leader."""
    s = three_nodes().write("n1", E(2, 2), 0).elected("n1", 3)
    assert judge(s.commit("n1", None, 2, 3, 2, [E(1, 0, b"\x01"), E(2, 2)], leader=True).events) == []


# --- leader_match_rule -------------------------------------------------------------------------------
def _leader_of_term_3_and_a_follower_of_term_1() -> Stream:
    """n1, leader of term 3, holds 2@3 and 3@3; n2 holds 2@1 and 3@1 from a leadership of term 1."""
    s = three_nodes()
    s.write("n2", E(2, 1), 0).write("n2", E(3, 1), 1)
    s.elected("n1", 3).write("n1", E(2, 3), 0).write("n1", E(3, 3), 3)
    return s


def test_a_leader_counting_a_follower_for_an_entry_it_does_not_hold_is_caught():
    s = _leader_of_term_3_and_a_follower_of_term_1().matched("n1", 3, "n2", 3, follower_term=1)
    [v] = judge(s.events)
    assert (v.invariant, v.nodes, v.indexes) == ("leader_match_rule", ("n1", "n2"), (3,))
    assert "n2 has 3@1 and the leader 3@3" in v.message and v.at == s.events[-1].time


def test_a_match_index_past_the_followers_log_or_the_leaders_is_caught():
    s = _leader_of_term_3_and_a_follower_of_term_1()
    [past_follower] = judge(s.matched("n1", 3, "n2", 4, follower_term=3).events)
    assert "n2 has nothing" in past_follower.message
    s = _leader_of_term_3_and_a_follower_of_term_1().write("n2", E(4, 1), 1)
    [past_leader] = judge(s.matched("n1", 3, "n2", 4, follower_term=3).events)
    assert "n2 has 4@1 and the leader no entry" in past_leader.message


def test_a_follower_holding_the_leaders_entry_passes():
    s = _leader_of_term_3_and_a_follower_of_term_1()
    s.truncate("n2", 2, 1).write("n2", E(2, 3), 0).write("n2", E(3, 3), 3)
    assert judge(s.matched("n1", 3, "n2", 3, follower_term=3).events) == []


def test_a_follower_of_a_later_term_a_crashed_one_or_a_snapshot_index_is_not_judged():
    s = _leader_of_term_3_and_a_follower_of_term_1()
    assert judge(s.matched("n1", 3, "n2", 3, follower_term=4).events) == []  # a newer leader may have rewritten it
    s = _leader_of_term_3_and_a_follower_of_term_1()
    assert judge(s.matched("n1", 3, "n2", 3, follower_term=None, up=False).events) == []
    s = _leader_of_term_3_and_a_follower_of_term_1().compact("n2", 3, 2)  # n2's snapshot covers 2
    assert judge(s.matched("n1", 3, "n2", 2, follower_term=3).events) == []


# --- the checker ----------------------------------------------------------------------------------
def test_a_stream_checker_needs_events_and_a_sampling_one_takes_none():
    with pytest.raises(ValueError, match="needs the step's events"):
        SafetyChecker(stream=True).step([])
    with pytest.raises(ValueError, match="needs the step's events"):
        SafetyChecker().step([], events=[])


def test_the_stream_checker_keeps_the_invariant_names():
    names_ = {inv.name for inv in SafetyChecker(stream=True).invariants}
    assert names_ == {"election_safety", "vote_safety", "log_matching", "state_machine_safety",
                      "leader_completeness", "leader_commit_rule", "leader_match_rule", "election_quorum",
                      "durability", "no_node_errors"}


def test_handling_names_the_message_or_the_tick_after_it():
    assert str(MSG) == "append_entries #42 n3->n1"
    assert str(Handling("tick", 42, "n3", "n1", "append_entries")) == "tick after append_entries #42 n3->n1"
    assert str(Handling("tick")) == "tick"


def test_a_sampled_violation_prints_as_before():
    v = Violation("election_safety", "two leaders", nodes=("n1", "n2"), terms=(3,))
    assert str(v) == "election_safety: two leaders (nodes n1, n2; terms 3)"


def test_events_of_an_incarnation_never_started_are_refused():
    with pytest.raises(ValueError, match="before its Started event"):
        judge(Stream().write("n1", E(2, 1), 0).events)
