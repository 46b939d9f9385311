"""Tests for the incremental Raft safety invariants in :mod:`harness.check.invariants`.

Every test feeds hand-built :class:`NodeState` sequences, one tuple per step,
as :meth:`Cluster.observe` would.  Each invariant gets tests where a broken
sequence is rejected (checking the violation's invariant name and the nodes,
terms and indexes it names) and tests where a legal sequence is accepted.

Three tests (log matching first seen at a log start, leader completeness of
an intermediate leader, two acknowledgements at one index) were written as
strict xfails against bugs the checker had; they pass since the fixes.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import pytest

from harness.sim.cluster import NodeError
from harness.history import FAILED, OK, READ, UNKNOWN, WRITE, Operation
from harness.check.invariants import (
    Durability,
    ElectionSafety,
    LeaderCompleteness,
    LogHistory,
    LogMatching,
    NoNodeErrors,
    SafetyChecker,
    SafetyViolation,
    StateMachineSafety,
    Violation,
)
from harness.state import CANDIDATE, FOLLOWER, LEADER, Entry, NodeState, crashed_state

# --- builders -----------------------------------------------------------------------------------

EntrySpec = Union[Entry, Tuple[int, int], Tuple[int, int, bytes]]

_WHOLE = object()  # changed_from sentinel: the whole log is new (first observation of an incarnation)
_AUTO = object()  # changed_from sentinel: diff against the previous observation


def cmd(index: int, term: int) -> bytes:
    """The command the builders put at (index, term) unless told otherwise."""
    return b"cmd-%d-%d" % (index, term)


def to_entries(log: Sequence[EntrySpec]) -> Tuple[Entry, ...]:
    """``[(1, 1), (2, 1, b"x"), Entry(...)]`` -> contiguous Entries (command defaults to :func:`cmd`)."""
    out = []
    for spec in log:
        if isinstance(spec, Entry):
            e = spec
        elif len(spec) == 2:
            e = Entry(spec[0], spec[1], cmd(spec[0], spec[1]))
        else:
            e = Entry(*spec)
        if out:
            assert e.index == out[-1].index + 1, f"test log not contiguous at {e}"
        out.append(e)
    return tuple(out)


def node_state(node_id: str, term: int, role: str = FOLLOWER, log: Sequence[EntrySpec] = (),
               commit: int = 0, *, incarnation: int = 1, changed_from=_WHOLE, up: bool = True,
               leader: Optional[str] = None, snapshots_installed: int = 0,
               commit_fell: Optional[Tuple[int, int]] = None) -> NodeState:
    """One NodeState.  ``log`` is the log as it is now (its first entry is ``first_index``);
    ``changed_from`` defaults to the whole log, as on the first observation of an incarnation."""
    entries = to_entries(log)
    first_index = entries[0].index if entries else 1
    last_index, last_term = (entries[-1].index, entries[-1].term) if entries else (0, 0)
    if changed_from is _WHOLE:
        changed_from = first_index if entries else None
    changed: Tuple[Entry, ...] = ()
    prev_term = None
    if changed_from is not None:
        changed = tuple(e for e in entries if e.index >= changed_from)
        if first_index < changed_from <= last_index + 1:
            prev_term = entries[changed_from - 1 - first_index].term
    if leader is None and role == LEADER:
        leader = node_id
    return NodeState(id=node_id, incarnation=incarnation, up=up, voter=True, role=role, term=term,
                     voted_for=None, leader=leader, commit_index=commit, last_applied=commit,
                     first_index=first_index, last_index=last_index, last_term=last_term,
                     changed_from=changed_from, changed_prev_term=prev_term, changed=changed,
                     snapshots_installed=snapshots_installed, commit_fell=commit_fell, tail=entries[-4:])


class Observer:
    """Builds successive NodeStates the way ``Cluster.observe()`` does.

    Each call gives a node's whole current log; ``changed_from`` is computed
    against this incarnation's previous observation: the first index whose
    entry differs, or one past the new end if the log was only truncated, or
    None if nothing changed (a log that only lost a prefix to compaction is
    unchanged).  Pass ``changed_from=`` to force a value, e.g. a rewrite with
    identical entries, which the real journal also reports.
    """

    def __init__(self) -> None:
        self._logs: Dict[Tuple[str, int], Tuple[Entry, ...]] = {}

    def __call__(self, node_id: str, term: int, role: str = FOLLOWER, log: Sequence[EntrySpec] = (),
                 commit: int = 0, *, incarnation: int = 1, changed_from=_AUTO, **kw) -> NodeState:
        entries = to_entries(log)
        key = (node_id, incarnation)
        if changed_from is _AUTO:
            changed_from = self._diff(self._logs.get(key), entries)
        self._logs[key] = entries
        return node_state(node_id, term, role, entries, commit, incarnation=incarnation,
                          changed_from=changed_from, **kw)

    @staticmethod
    def _diff(old: Optional[Tuple[Entry, ...]], new: Tuple[Entry, ...]) -> Optional[int]:
        if old is None:
            return new[0].index if new else None
        before = {e.index: e for e in old}
        for e in new:
            if before.get(e.index) != e:
                return e.index
        old_last = old[-1].index if old else 0
        new_last = new[-1].index if new else 0
        return new_last + 1 if old_last > new_last else None

    @staticmethod
    def crashed(node_id: str, incarnation: int) -> NodeState:
        return crashed_state(node_id, incarnation, voter=True)


def write(index: int, term: int, *, via: str = "n1", outcome: str = OK, kind: str = WRITE,
          op_id: int = 0) -> Operation:
    """A completed client operation that reports log slot ``index@term``."""
    return Operation(id=op_id, kind=kind, key="k", value=op_id, via=via, invoke=0.0, complete=1.0,
                     outcome=outcome, index=index, term=term)


def node_error(node: str, activity: str = "tick", incarnation: int = 1) -> NodeError:
    return NodeError(node=node, incarnation=incarnation, activity=activity, time=1.5,
                     traceback="Traceback (most recent call last):\n  ...\nKeyError: 'boom'\n")


def rejected(checker: SafetyChecker, states: Sequence[NodeState], completed: Sequence[Operation] = (),
             errors: Sequence[NodeError] = ()) -> Tuple[Violation, ...]:
    """Run one step that must raise SafetyViolation; return its violations."""
    with pytest.raises(SafetyViolation) as info:
        checker.step(states, completed, errors)
    assert info.value.violations, "SafetyViolation without violations"
    return info.value.violations


def names(violations: Sequence[Violation]) -> List[str]:
    return [v.invariant for v in violations]


def log_upto(last: int, term: int = 1) -> List[Tuple[int, int]]:
    """Entries 1..last, all of ``term``."""
    return [(i, term) for i in range(1, last + 1)]


# --- the builders themselves ----------------------------------------------------------------------


def test_observer_reports_changes_like_the_harness():
    """The Observer's changed_from/changed/changed_prev_term follow NodeState's documented meaning,
    so the tests below feed the invariants what Cluster.observe() would."""
    obs = Observer()
    first = obs("n1", 1, log=[(1, 1), (2, 1), (3, 1)])
    assert (first.changed_from, first.changed_prev_term) == (1, None)
    assert [str(e) for e in first.changed] == ["1@1", "2@1", "3@1"]
    assert obs("n1", 1, log=[(1, 1), (2, 1), (3, 1)]).changed_from is None  # unchanged
    appended = obs("n1", 1, log=[(1, 1), (2, 1), (3, 1), (4, 1)])
    assert (appended.changed_from, appended.changed_prev_term, appended.changed) == (4, 1, (Entry(4, 1, cmd(4, 1)),))
    replaced = obs("n1", 2, log=[(1, 1), (2, 2)])
    assert (replaced.changed_from, replaced.changed_prev_term, replaced.changed) == (2, 1, (Entry(2, 2, cmd(2, 2)),))
    truncated = obs("n1", 2, log=[(1, 1)])
    assert (truncated.changed_from, truncated.changed_prev_term, truncated.changed) == (2, 1, ())
    obs("n1", 2, log=[(1, 1), (2, 2)])
    compacted = obs("n1", 2, log=[(2, 2), (3, 2)])  # 1@1 compacted away; 3@2 is new
    assert (compacted.first_index, compacted.changed_from) == (2, 3)
    restarted = obs("n1", 2, log=[(2, 2), (3, 2)], incarnation=2)
    assert (restarted.changed_from, restarted.changed_prev_term) == (2, None)


# --- election safety ------------------------------------------------------------------------------


def test_election_safety_rejects_two_leaders_of_one_term_in_one_step():
    """Two nodes that both lead term 2 in the same observation break election safety."""
    obs, checker = Observer(), SafetyChecker()
    violations = rejected(checker, [
        obs("n1", 2, LEADER, [(1, 1)], 1),
        obs("n2", 2, LEADER, [(1, 1)], 1),
        obs("n3", 2, FOLLOWER, [(1, 1)], 1),
    ])
    assert names(violations) == ["election_safety"]
    assert violations[0].nodes == ("n1", "n2")
    assert violations[0].terms == (2,)


@pytest.mark.parametrize("n2_restarts", [False, True], ids=["n2-same-incarnation", "n2-restarted-too"])
def test_election_safety_rejects_second_leader_of_a_term_after_the_first_crashed_and_restarted(n2_restarts):
    """The leader of each term is remembered for the whole run: after n1 (leader of term 2) crashes
    and comes back as a new incarnation, n2 leading term 2 is still a second leader of that term,
    also when n2 is itself a new incarnation (leadership is per node id, not per incarnation)."""
    obs, checker = Observer(), SafetyChecker()
    n2_inc = 2 if n2_restarts else 1
    checker.step([obs("n1", 2, LEADER, [(1, 1)], 1), obs("n2", 2, FOLLOWER, [(1, 1)], 1),
                  obs("n3", 2, FOLLOWER, [(1, 1)], 1)])
    checker.step([obs.crashed("n1", 1), obs.crashed("n2", 1) if n2_restarts else obs("n2", 2, FOLLOWER, [(1, 1)], 1),
                  obs("n3", 2, FOLLOWER, [(1, 1)], 1)])
    checker.step([obs("n1", 2, FOLLOWER, [(1, 1)], 0, incarnation=2),
                  obs("n2", 2, CANDIDATE, [(1, 1)], 0 if n2_restarts else 1, incarnation=n2_inc),
                  obs("n3", 2, FOLLOWER, [(1, 1)], 1)])
    violations = rejected(checker, [
        obs("n1", 2, FOLLOWER, [(1, 1)], 0, incarnation=2),
        obs("n2", 2, LEADER, [(1, 1)], 1, incarnation=n2_inc),
        obs("n3", 2, FOLLOWER, [(1, 1)], 1),
    ])
    assert names(violations) == ["election_safety"]
    assert (violations[0].nodes, violations[0].terms) == (("n1", "n2"), (2,))
    assert checker.steps == 4


def test_election_safety_check_reports_every_extra_leader():
    """ElectionSafety.check on its own: three leaders of term 5 are two violations, each naming
    the first leader seen and the extra one; a crashed node is never counted as a leader."""
    inv = ElectionSafety()
    dead_leader = node_state("n4", 5, LEADER, [(1, 1)], up=False)
    out = inv.check([node_state(n, 5, LEADER, [(1, 1)]) for n in ("n1", "n2", "n3")] + [dead_leader])
    assert [(v.invariant, v.nodes, v.terms) for v in out] == [
        ("election_safety", ("n1", "n2"), (5,)),
        ("election_safety", ("n1", "n3"), (5,)),
    ]


def test_election_safety_accepts_leaders_of_different_terms_and_a_stale_leader():
    """n1 leads term 1 for several steps, then n2 is elected in term 2 while n1 (partitioned)
    still believes it leads term 1, then n3 leads term 3: one leader per term, so accepted."""
    obs, checker = Observer(), SafetyChecker()
    for _ in range(3):
        checker.step([obs("n1", 1, LEADER, [(1, 1)], 1), obs("n2", 1, FOLLOWER, [(1, 1)], 1),
                      obs("n3", 1, FOLLOWER, [(1, 1)], 1)])
    checker.step([obs("n1", 1, LEADER, [(1, 1)], 1), obs("n2", 2, LEADER, [(1, 1), (2, 2)], 1),
                  obs("n3", 2, FOLLOWER, [(1, 1), (2, 2)], 1)])
    checker.step([obs("n1", 3, FOLLOWER, [(1, 1), (2, 2)], 1), obs("n2", 3, FOLLOWER, [(1, 1), (2, 2)], 1),
                  obs("n3", 3, LEADER, [(1, 1), (2, 2), (3, 3)], 1)])
    assert checker.steps == 5


def test_election_safety_accepts_same_leader_of_same_term_across_steps():
    """The same node (same incarnation) leading the same term at every step is one leader."""
    obs, checker = Observer(), SafetyChecker()
    for last in range(1, 6):
        checker.step([obs("n1", 2, LEADER, log_upto(last, 2), last - 1),
                      obs("n2", 2, FOLLOWER, log_upto(last - 1, 2), max(last - 2, 0))])


# --- log matching ---------------------------------------------------------------------------------


def test_log_matching_rejects_same_index_and_term_with_different_commands():
    """n1 and n2 both hold an entry at index 3 of term 2, with different commands (seen in
    different steps): two logs with the same (index, term) must hold the same entry."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 2, LEADER, [(1, 1), (2, 1), (3, 2, b"set x=1")], 2),
                  obs("n2", 2, FOLLOWER, [(1, 1), (2, 1)], 2)])
    violations = rejected(checker, [obs("n1", 2, LEADER, [(1, 1), (2, 1), (3, 2, b"set x=1")], 2),
                                    obs("n2", 2, FOLLOWER, [(1, 1), (2, 1), (3, 2, b"set x=2")], 2)])
    assert names(violations) == ["log_matching"]
    v = violations[0]
    assert (v.nodes, v.terms, v.indexes) == (("n1", "n2"), (2,), (3,))
    assert "3@2" in v.message


def test_log_matching_check_rejects_different_commands_in_one_step():
    """LogMatching.check on its own, both logs arriving in the same step."""
    inv = LogMatching(LogHistory())
    out = inv.check([node_state("n1", 2, LEADER, [(1, 1), (2, 1), (3, 2, b"a")]),
                     node_state("n2", 2, FOLLOWER, [(1, 1), (2, 1), (3, 2, b"b")])])
    assert [(v.invariant, v.nodes, v.terms, v.indexes) for v in out] == [
        ("log_matching", ("n1", "n2"), (2,), (3,)),
    ]


def test_log_matching_rejects_same_entry_after_different_previous_terms():
    """n1 and n2 both hold 3@2 (same command) but it follows 2@1 on n1 and 2@2 on n2: the logs
    differ below an entry they share.  The violation names the index below (2) and the terms
    (3@2's term, then the previous-entry terms on n1 and on n2)."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 2, FOLLOWER, [(1, 1), (2, 1), (3, 2)], 1)])
    violations = rejected(checker, [obs("n1", 2, FOLLOWER, [(1, 1), (2, 1), (3, 2)], 1),
                                    obs("n2", 2, FOLLOWER, [(1, 1), (2, 2), (3, 2)], 1)])
    assert names(violations) == ["log_matching"]
    v = violations[0]
    assert (v.nodes, v.terms, v.indexes) == (("n1", "n2"), (2, 1, 2), (2,))


def test_log_matching_accepts_follower_whose_conflicting_suffix_is_replaced_by_the_leaders():
    """n2 holds 2@1 and 3@1 from a deposed leader; the new leader n1 (term 2) holds 2@2 and 3@2.
    n2 then truncates its suffix from index 2 and takes the leader's entries (changed_from=2):
    legal Raft, accepted, and from then on both logs agree."""
    obs, checker = Observer(), SafetyChecker()
    leader_log = [(1, 1), (2, 2), (3, 2)]
    checker.step([obs("n1", 2, LEADER, leader_log, 1), obs("n2", 2, FOLLOWER, [(1, 1), (2, 1), (3, 1)], 1),
                  obs("n3", 2, FOLLOWER, leader_log, 1)])
    follower = obs("n2", 2, FOLLOWER, leader_log, 1)
    assert (follower.changed_from, follower.changed_prev_term) == (2, 1)
    checker.step([obs("n1", 2, LEADER, leader_log, 3), follower, obs("n3", 2, FOLLOWER, leader_log, 3)])
    checker.step([obs("n1", 2, LEADER, leader_log + [(4, 2)], 3), obs("n2", 2, FOLLOWER, leader_log + [(4, 2)], 3),
                  obs("n3", 2, FOLLOWER, leader_log, 3)])


def test_log_matching_rejects_different_previous_terms_even_if_first_seen_at_a_log_start():
    """n1's log starts at 5@2 (everything before is in its snapshot), so its observation cannot say
    what precedes 5@2.  Later n2 holds 5@2 after 4@1 and n3 holds 5@2 after 4@2: those two logs
    differ below a shared entry, which log matching forbids whatever n1 showed."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 2, FOLLOWER, [(5, 2), (6, 2)], 5)])
    checker.step([obs("n1", 2, FOLLOWER, [(5, 2), (6, 2)], 5),
                  obs("n2", 2, FOLLOWER, [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2)], 0)])
    violations = rejected(checker, [obs("n1", 2, FOLLOWER, [(5, 2), (6, 2)], 5),
                                    obs("n2", 2, FOLLOWER, [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2)], 0),
                                    obs("n3", 2, FOLLOWER, [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)], 0)])
    assert names(violations) == ["log_matching"]
    assert violations[0].nodes[-1] == "n3" and violations[0].indexes == (4,)


# --- state machine safety -------------------------------------------------------------------------


def test_state_machine_safety_rejects_two_nodes_committing_different_entries_at_one_index():
    """n1 commits 2@1 and n2 commits 2@2: two different entries committed (so applied) at index 2."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 2, FOLLOWER, [(1, 1), (2, 1)], 2), obs("n2", 2, FOLLOWER, [(1, 1), (2, 2)], 1)])
    violations = rejected(checker, [obs("n1", 2, FOLLOWER, [(1, 1), (2, 1)], 2),
                                    obs("n2", 2, FOLLOWER, [(1, 1), (2, 2)], 2)])
    assert names(violations) == ["state_machine_safety"]
    v = violations[0]
    assert (v.nodes, v.terms, v.indexes) == (("n1", "n2"), (1, 2), (2,))


def test_state_machine_safety_rejects_commit_index_going_back_within_an_incarnation():
    """n1's commit index falls from 3 to 2 without a restart."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, LEADER, log_upto(3), 3)])
    violations = rejected(checker, [obs("n1", 1, LEADER, log_upto(3), 2)])
    assert names(violations) == ["state_machine_safety"]
    assert (violations[0].nodes, violations[0].indexes) == (("n1",), (3, 2))


def test_state_machine_safety_rejects_a_commit_index_that_fell_and_rose_again_between_steps():
    """Observed at 3 and at 5, but the journal saw 5 -> 4 -> 5 in between (finding 12's rollback)."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, FOLLOWER, log_upto(5), 3)])
    violations = rejected(checker, [obs("n1", 1, FOLLOWER, log_upto(5), 5, commit_fell=(5, 4))])
    assert names(violations) == ["state_machine_safety"]
    assert (violations[0].nodes, violations[0].indexes) == (("n1",), (5, 4))
    assert "went back from 5 to 4 since the previous step (now 5)" in violations[0].message


def test_the_journal_reports_the_first_commit_drop_once():
    from harness.adapter.observe import watch

    class Journal(list):
        def setRaftCommitIndex(self, index):
            self.commit = index

    journal = watch(Journal())
    for index in (2, 5, 5, 7):
        journal.setRaftCommitIndex(index)
    assert journal.take_changes()[1] is None  # only rises (and a repeat)
    for index in (6, 4, 9, 8):
        journal.setRaftCommitIndex(index)
    assert journal.take_changes()[1] == (7, 6) and journal.commit == 8
    assert journal.take_changes()[1] is None


def test_state_machine_safety_rejects_commit_index_past_the_last_log_index():
    """n2 claims commit index 4 with only 3 entries in its log."""
    obs, checker = Observer(), SafetyChecker()
    violations = rejected(checker, [obs("n1", 1, LEADER, log_upto(4), 4), obs("n2", 1, FOLLOWER, log_upto(3), 4)])
    assert names(violations) == ["state_machine_safety"]
    assert (violations[0].nodes, violations[0].indexes) == (("n2",), (4, 3))


def test_state_machine_safety_rejects_a_committed_entry_rewritten_on_the_same_node():
    """n1 committed 1..3 (all term 1), then rewrites its log from index 2 (changed_from=2, below
    its commit index) with term-2 entries while keeping commit index 3: both rewritten committed
    entries are reported, each naming n1 twice, the old and new terms and the index."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, FOLLOWER, log_upto(3), 3)])
    rewritten = obs("n1", 2, FOLLOWER, [(1, 1), (2, 2), (3, 2)], 3)
    assert rewritten.changed_from == 2
    violations = rejected(checker, [rewritten])
    assert names(violations) == ["state_machine_safety", "state_machine_safety"]
    assert [(v.nodes, v.terms, v.indexes) for v in violations] == [
        (("n1", "n1"), (1, 2), (2,)),
        (("n1", "n1"), (1, 2), (3,)),
    ]


def test_state_machine_safety_accepts_commit_index_reset_on_a_new_incarnation():
    """A restarted node (new incarnation) may come back with a lower commit index (pysyncobj does
    not persist it) and commit again; only within one incarnation must it never decrease."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, LEADER, log_upto(3), 3), obs("n2", 1, FOLLOWER, log_upto(3), 3)])
    checker.step([obs.crashed("n1", 1), obs("n2", 1, FOLLOWER, log_upto(3), 3)])
    checker.step([obs("n1", 1, FOLLOWER, log_upto(3), 0, incarnation=2), obs("n2", 2, CANDIDATE, log_upto(3), 3)])
    checker.step([obs("n1", 2, FOLLOWER, log_upto(3) + [(4, 2)], 4, incarnation=2),
                  obs("n2", 2, LEADER, log_upto(3) + [(4, 2)], 4)])


def test_state_machine_safety_accepts_log_compaction():
    """Compaction moves first_index up without changing any entry (changed_from None); the run
    then goes on appending and committing on top of the compacted log."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, LEADER, log_upto(5), 5), obs("n2", 1, FOLLOWER, log_upto(5), 5)])
    compacted = obs("n1", 1, LEADER, log_upto(5)[3:], 5)
    assert (compacted.first_index, compacted.changed_from) == (4, None)
    checker.step([compacted, obs("n2", 1, FOLLOWER, log_upto(5), 5)])
    checker.step([obs("n1", 1, LEADER, log_upto(7)[3:], 7), obs("n2", 1, FOLLOWER, log_upto(7)[4:], 6)])
    # a node restarted from its snapshot: a new incarnation whose log starts at the snapshot point
    checker.step([obs("n1", 1, LEADER, log_upto(7)[3:], 7), obs("n2", 1, FOLLOWER, log_upto(7)[5:], 6, incarnation=2)])


def _stale_follower_then_snapshot(after_snapshot_log, snapshots_installed):
    """n2, cut off in term 1, holds 4@1 and 5@1 that were never committed; n1 (term 2) committed
    4@2..6@2 and sends n2 a snapshot up to 6.  Returns the checker after n2's first two steps."""
    obs, checker = Observer(), SafetyChecker()
    leader_log = log_upto(3) + [(4, 2), (5, 2), (6, 2)]
    checker.step([obs("n1", 2, LEADER, leader_log, 6), obs("n2", 1, FOLLOWER, log_upto(5), 3)])
    installed = obs("n2", 2, FOLLOWER, after_snapshot_log, 6, changed_from=after_snapshot_log[0][0],
                    snapshots_installed=snapshots_installed)
    return checker, obs, leader_log, installed


def test_state_machine_safety_accepts_a_snapshot_replacing_uncommitted_entries():
    """Installing a snapshot clears the journal: n2's log is now only 6@2, and its commit index
    jumps from 3 to 6 over indexes whose old entries (4@1, 5@1) are gone, not committed."""
    checker, obs, leader_log, installed = _stale_follower_then_snapshot([(6, 2)], 1)
    checker.step([obs("n1", 2, LEADER, leader_log, 6), installed])
    checker.step([obs("n1", 2, LEADER, leader_log + [(7, 2)], 7),
                  obs("n2", 2, FOLLOWER, [(6, 2), (7, 2)], 7, snapshots_installed=1)])


def test_state_machine_safety_rejects_a_stale_entry_committed_without_a_snapshot():
    """The same commit jump without a snapshot: n2 still holds 4@1 and 5@1 and commits them."""
    checker, obs, leader_log, _ = _stale_follower_then_snapshot([(6, 2)], 1)
    stale = obs("n2", 2, FOLLOWER, log_upto(5) + [(6, 2)], 6)
    assert "state_machine_safety" in names(rejected(checker, [obs("n1", 2, LEADER, leader_log, 6), stale]))


def test_state_machine_safety_rejects_a_divergent_commit_after_a_snapshot():
    """After the snapshot n2 is checked as before: committing 7@3 where n1 committed 7@2 is caught."""
    checker, obs, leader_log, installed = _stale_follower_then_snapshot([(6, 2)], 1)
    checker.step([obs("n1", 2, LEADER, leader_log + [(7, 2)], 7), installed])
    divergent = obs("n2", 3, FOLLOWER, [(6, 2), (7, 3)], 7, snapshots_installed=1)
    assert "state_machine_safety" in names(rejected(checker, [obs("n1", 2, LEADER, leader_log + [(7, 2)], 7),
                                                              divergent]))


def test_state_machine_safety_accepts_truncating_an_uncommitted_suffix():
    """n2 committed only index 1; its entries 2@1 and 3@1 were never committed, so it may drop
    them (changed_from=2, nothing after) and later take the new leader's 2@2."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 2, LEADER, [(1, 1), (2, 2)], 1), obs("n2", 1, FOLLOWER, log_upto(3), 1)])
    truncated = obs("n2", 2, FOLLOWER, [(1, 1)], 1)
    assert (truncated.changed_from, truncated.changed) == (2, ())
    checker.step([obs("n1", 2, LEADER, [(1, 1), (2, 2)], 1), truncated])
    checker.step([obs("n1", 2, LEADER, [(1, 1), (2, 2)], 2), obs("n2", 2, FOLLOWER, [(1, 1), (2, 2)], 2)])


def test_state_machine_safety_accepts_committed_entries_rewritten_identically():
    """A duplicated AppendEntries makes pysyncobj delete and re-add entries it already had, so the
    journal reports changed_from below the commit index with the same entries: not a violation."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, FOLLOWER, log_upto(4), 4)])
    checker.step([obs("n1", 1, FOLLOWER, log_upto(4), 4, changed_from=2)])


# --- leader completeness --------------------------------------------------------------------------


@pytest.mark.parametrize("n3_log, has", [([(1, 1)], "nothing"), ([(1, 1), (2, 3)], "2@3")])
def test_leader_completeness_rejects_a_leader_without_an_entry_committed_earlier(n3_log, has):
    """2@1 is committed in term 1; then n3 becomes leader of term 3 without it (it has nothing at
    index 2, or its own term-3 no-op there)."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, LEADER, log_upto(2), 2), obs("n2", 1, FOLLOWER, log_upto(2), 2),
                  obs("n3", 1, FOLLOWER, [(1, 1)], 1)])
    violations = rejected(checker, [obs("n1", 1, LEADER, log_upto(2), 2), obs("n2", 1, FOLLOWER, log_upto(2), 2),
                                    obs("n3", 3, LEADER, n3_log, 1)])
    assert names(violations) == ["leader_completeness"]
    v = violations[0]
    assert (v.nodes, v.terms, v.indexes) == (("n3",), (3, 1), (2,))
    assert f"it has {has}" in v.message


def test_leader_completeness_rejects_when_newest_commit_is_from_a_later_term():
    """The newest committed entry (3@4) is from a term after the new leader's (3), so the check
    must look further back: 2@1 was committed (seen) in term 1, and n3, leader of term 3, lacks it."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, LEADER, log_upto(2), 2), obs("n2", 1, FOLLOWER, log_upto(2), 2),
                  obs("n3", 1, FOLLOWER, [(1, 1)], 1)])
    violations = rejected(checker, [obs("n1", 4, LEADER, log_upto(2) + [(3, 4)], 3),
                                    obs("n2", 4, FOLLOWER, log_upto(2) + [(3, 4)], 3),
                                    obs("n3", 3, LEADER, [(1, 1), (2, 2)], 1)])
    assert names(violations) == ["leader_completeness"]
    assert (violations[0].nodes, violations[0].terms, violations[0].indexes) == (("n3",), (3, 1), (2,))


def test_leader_completeness_check_on_its_own():
    """LeaderCompleteness reads commits and leader logs that StateMachineSafety records on the
    shared LogHistory, so it runs after it; a leader is judged once per (term, node)."""
    logs = LogHistory()
    sms, lc = StateMachineSafety(logs), LeaderCompleteness(logs)
    committed = [node_state("n1", 1, LEADER, log_upto(2), 2)]
    assert sms.check(committed) == [] and lc.check(committed) == []
    late = [node_state("n2", 2, LEADER, [(1, 1), (2, 2)], 1)]
    assert sms.check(late) == []
    out = lc.check(late)
    assert [(v.invariant, v.nodes, v.terms, v.indexes) for v in out] == [
        ("leader_completeness", ("n2",), (2, 1), (2,))]
    assert lc.check(late) == []  # the same leader of the same term is not reported again


def test_leader_completeness_accepts_a_new_leader_holding_the_committed_entries():
    """2@1 committed in term 1; n3 becomes leader of term 3 holding it (plus its own no-op)."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, LEADER, log_upto(2), 2), obs("n2", 1, FOLLOWER, log_upto(2), 2),
                  obs("n3", 1, FOLLOWER, log_upto(2), 1)])
    checker.step([obs("n1", 1, LEADER, log_upto(2), 2), obs("n2", 3, FOLLOWER, log_upto(2), 2),
                  obs("n3", 3, LEADER, log_upto(2) + [(3, 3)], 2)])
    checker.step([obs("n1", 3, FOLLOWER, log_upto(2) + [(3, 3)], 2), obs("n2", 3, FOLLOWER, log_upto(2) + [(3, 3)], 3),
                  obs("n3", 3, LEADER, log_upto(2) + [(3, 3)], 3)])


def test_leader_completeness_accepts_committed_entry_inside_the_leaders_snapshot():
    """1..3 are committed (newest 3@1); n3 becomes leader of term 3 with a log compacted so it
    starts at index 4 (first_index 4 > 3): 3@1 is in its snapshot, not its log, and is accepted."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, LEADER, log_upto(4), 3), obs("n2", 1, FOLLOWER, log_upto(4), 3)])
    leader = obs("n3", 3, LEADER, [(4, 1), (5, 3)], 3)
    assert leader.first_index == 4 and checker.logs.highest_committed_before(4) == (3, 1)
    checker.step([obs("n1", 1, LEADER, log_upto(4), 3), obs("n2", 3, FOLLOWER, log_upto(4), 3), leader])


def test_leader_completeness_judges_a_leader_when_first_observed():
    """The legal 5-node history of the next test, but with n3's election to term 3 observed one
    step before n1 (term 4) commits 2@1: n3 lacked nothing committed when it became leader, and an
    old-term entry committed later, in term 4, does not retroactively bind the leader of term 3."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, LEADER, log_upto(2), 1), obs("n2", 1, FOLLOWER, log_upto(2), 1),
                  obs("n3", 1, FOLLOWER, [(1, 1)], 1), obs("n4", 1, FOLLOWER, [(1, 1)], 1),
                  obs("n5", 1, FOLLOWER, [(1, 1)], 1)])
    checker.step([obs("n1", 1, LEADER, log_upto(2), 1), obs("n2", 1, FOLLOWER, log_upto(2), 1),
                  obs("n3", 3, LEADER, [(1, 1), (2, 2), (3, 3)], 1), obs("n4", 3, FOLLOWER, [(1, 1)], 1),
                  obs("n5", 3, FOLLOWER, [(1, 1), (2, 2), (3, 3)], 1)])
    checker.step([obs("n1", 4, LEADER, [(1, 1), (2, 1), (3, 4)], 3),
                  obs("n2", 4, FOLLOWER, [(1, 1), (2, 1), (3, 4)], 1),
                  obs("n3", 3, LEADER, [(1, 1), (2, 2), (3, 3)], 1),
                  obs("n4", 4, FOLLOWER, [(1, 1), (2, 1), (3, 4)], 1),
                  obs("n5", 3, FOLLOWER, [(1, 1), (2, 2), (3, 3)], 1)])


def test_leader_completeness_accepts_intermediate_leader_when_old_entry_is_committed_later():
    """A legal 5-node history, observed in two steps:

    step 1: n1 leads term 1 and has replicated 2@1 to n2 only (not committed).
    step 2, all between two observations: n3 wins term 2 (votes n3, n4, n5) and appends 2@2;
    n3 wins term 3 (votes n3, n4, n5; its 2@2 is more up to date than their 1@1) and appends
    its no-op 3@3; n1 wins term 4 (votes n1, n2, n4), appends 3@4, replicates it to n2 and n4
    and commits index 3, which commits 2@1 *in term 4*.  n3 is still leader of term 3 (cut off).

    Leader completeness only demands 2@1 from leaders of terms after 4, so n3 leading term 3
    without it is legal and must be accepted."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 1, LEADER, log_upto(2), 1), obs("n2", 1, FOLLOWER, log_upto(2), 1),
                  obs("n3", 1, FOLLOWER, [(1, 1)], 1), obs("n4", 1, FOLLOWER, [(1, 1)], 1),
                  obs("n5", 1, FOLLOWER, [(1, 1)], 1)])
    checker.step([obs("n1", 4, LEADER, [(1, 1), (2, 1), (3, 4)], 3),
                  obs("n2", 4, FOLLOWER, [(1, 1), (2, 1), (3, 4)], 1),
                  obs("n3", 3, LEADER, [(1, 1), (2, 2), (3, 3)], 1),
                  obs("n4", 4, FOLLOWER, [(1, 1), (2, 1), (3, 4)], 1),
                  obs("n5", 3, FOLLOWER, [(1, 1), (2, 2), (3, 3)], 1)])


# --- durability -----------------------------------------------------------------------------------


def _five_entries(last_term: int) -> List[Tuple[int, int]]:
    return [(1, 1), (2, 1), (3, 2), (4, 2), (5, last_term)]


def test_durability_rejects_acknowledged_write_whose_slot_is_later_committed_differently():
    """A write acknowledged at 5@2 (sent via n2); later n1 commits 5@3 at index 5: the
    acknowledged write was lost.  Names the node the client used and the committing node."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 2, FOLLOWER, _five_entries(2), 4)], completed=[write(5, 2, via="n2")])
    violations = rejected(checker, [obs("n1", 3, FOLLOWER, _five_entries(3), 5)])
    assert names(violations) == ["durability"]
    v = violations[0]
    assert (v.nodes, v.terms, v.indexes) == (("n2", "n1"), (2, 3), (5,))


def test_durability_rejects_acknowledgement_arriving_after_a_different_commit():
    """n1 commits 5@3 first; then a write is acknowledged as applied at 5@2."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 3, FOLLOWER, _five_entries(3), 5)])
    violations = rejected(checker, [obs("n1", 3, FOLLOWER, _five_entries(3), 5)], completed=[write(5, 2, via="n2")])
    assert set(names(violations)) == {"durability"}
    assert {(v.nodes, v.terms, v.indexes) for v in violations} == {(("n2", "n1"), (2, 3), (5,))}


def test_durability_rejects_ack_and_different_commit_in_the_same_step():
    """Acknowledgement and the conflicting commit observed in one step are caught too.  (Today the
    same violation is listed twice, once from the new commit and once from the fresh ack; the test
    only requires that every reported violation is this one.)"""
    obs, checker = Observer(), SafetyChecker()
    violations = rejected(checker, [obs("n1", 3, FOLLOWER, _five_entries(3), 5)],
                          completed=[write(5, 2, via="n2")])
    assert set(names(violations)) == {"durability"}
    assert {(v.nodes, v.terms, v.indexes) for v in violations} == {(("n2", "n1"), (2, 3), (5,))}


@pytest.mark.parametrize("ack_first", [True, False])
def test_durability_accepts_acknowledged_write_committed_at_its_slot(ack_first):
    """The acknowledged slot 5@2 is the entry committed at index 5, whichever is seen first."""
    obs, checker = Observer(), SafetyChecker()
    ops = [write(5, 2, via="n1")]
    checker.step([obs("n1", 2, LEADER, _five_entries(2), 5 if not ack_first else 4)],
                 completed=ops if ack_first else ())
    checker.step([obs("n1", 2, LEADER, _five_entries(2), 5)], completed=() if ack_first else ops)
    checker.step([obs("n1", 2, LEADER, _five_entries(2), 5), obs("n2", 2, FOLLOWER, _five_entries(2), 5)])


@pytest.mark.parametrize("op", [
    write(5, 2, outcome=UNKNOWN), write(5, 2, outcome=FAILED), write(5, 2, kind=READ), write(None, None),
], ids=["unknown", "failed", "read", "no-slot"])
def test_durability_ignores_operations_that_were_not_acknowledged_writes(op):
    """Only OK writes with a log slot are promises; unknown/failed writes and reads are not."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 3, FOLLOWER, _five_entries(3), 5)], completed=[op])


def test_durability_rejects_second_write_acknowledged_at_an_already_acknowledged_index():
    """Write #0 is acknowledged at 5@2 and index 5 is committed as 5@2; then write #1 is
    acknowledged at 5@3.  Index 5 holds 5@2 for good, so write #1 was acknowledged but lost."""
    obs, checker = Observer(), SafetyChecker()
    checker.step([obs("n1", 2, LEADER, _five_entries(2), 5)], completed=[write(5, 2, via="n1", op_id=0)])
    violations = rejected(checker, [obs("n1", 2, LEADER, _five_entries(2), 5)],
                          completed=[write(5, 3, via="n2", op_id=1)])
    assert "durability" in names(violations)


def test_durability_check_on_its_own():
    """Durability reads commits recorded by StateMachineSafety on the shared LogHistory."""
    logs = LogHistory()
    sms, dur = StateMachineSafety(logs), Durability(logs)
    dur.acknowledge([write(2, 1, via="n3")])
    assert sms.check([node_state("n1", 2, FOLLOWER, [(1, 1), (2, 2)], 2)]) == []
    out = dur.check([])
    assert out and {(v.invariant, v.nodes, v.terms, v.indexes) for v in out} == {
        ("durability", ("n3", "n1"), (1, 2), (2,))}


# --- no node errors -------------------------------------------------------------------------------


def test_no_node_errors_reports_each_error_once_naming_its_node():
    """A NodeError in the cumulative error list is a violation naming its node; passing the same
    list again reports nothing new; a later error is reported alone."""
    obs, checker = Observer(), SafetyChecker()
    states = lambda: [obs("n1", 1, LEADER, [(1, 1)], 1), obs("n2", 1, FOLLOWER, [(1, 1)], 1)]  # noqa: E731
    errors: List[NodeError] = []
    checker.step(states(), (), errors)
    errors.append(node_error("n2", "handling append_entries from n1"))
    violations = rejected(checker, states(), errors=errors)
    assert names(violations) == ["no_node_errors"]
    assert violations[0].nodes == ("n2",)
    assert "handling append_entries from n1" in violations[0].message and "KeyError" in violations[0].message
    checker.step(states(), (), errors)  # same list: nothing new
    checker.step(states(), (), list(errors))  # an equal copy: still nothing new
    errors.append(node_error("n1", "tick"))
    violations = rejected(checker, states(), errors=errors)
    assert [(v.invariant, v.nodes) for v in violations] == [("no_node_errors", ("n1",))]


def test_no_node_errors_accepts_a_run_without_errors():
    """An empty error list is no violation, step after step, in the checker and on its own."""
    obs, checker = Observer(), SafetyChecker()
    for _ in range(3):
        checker.step([obs("n1", 1, LEADER, [(1, 1)], 1)], (), [])
    inv = NoNodeErrors()
    inv.errors = []
    assert inv.check([]) == []


def test_safety_violation_message_lists_every_violation():
    """SafetyViolation carries all violations of the step, and its text names where they are."""
    obs, checker = Observer(), SafetyChecker()
    violations = rejected(checker, [obs("n1", 2, LEADER, [(1, 1)], 1), obs("n2", 2, LEADER, [(1, 1)], 2)],
                          errors=[node_error("n3")])
    assert sorted(names(violations)) == ["election_safety", "no_node_errors", "state_machine_safety"]
    text = str(SafetyViolation(violations, "cluster dump"))
    assert "election_safety: two leaders in term 2: n1 and n2 (nodes n1, n2; terms 2)" in text
    assert text.endswith("cluster dump")


# --- incremental: long runs -----------------------------------------------------------------------


class _Replica:
    """One node of the synthetic long run: its log and the lowest index changed since last observed."""

    def __init__(self, node_id: str) -> None:
        self.id = node_id
        self.log: List[Entry] = [Entry(1, 1, cmd(1, 1))]  # log[i] is index i + 1
        self.first_index = 1
        self.commit = 1
        self.dirty: Optional[int] = 1

    def copy_from(self, source: List[Entry], upto: int) -> None:
        """Make log[:upto] equal source[:upto] (truncating any conflict), like AppendEntries."""
        n = min(len(self.log), upto)
        p = n
        while p > 0 and self.log[p - 1] != source[p - 1]:  # conflicts are only ever near the tail
            p -= 1
        if p < len(self.log) or upto > len(self.log):
            del self.log[p:]
            self.log.extend(source[p:upto])
            self._mark(p + 1)

    def _mark(self, index: int) -> None:
        self.dirty = index if self.dirty is None else min(self.dirty, index)

    def observe(self, term: int, role: str) -> NodeState:
        changed_from, changed, prev = self.dirty, (), None
        if changed_from is not None:
            changed_from = max(changed_from, self.first_index)
            changed = tuple(self.log[changed_from - 1:])
            if changed_from > self.first_index:
                prev = self.log[changed_from - 2].term
        self.dirty = None
        last = self.log[-1]
        return NodeState(id=self.id, incarnation=1, up=True, voter=True, role=role, term=term, voted_for=None,
                         leader=None, commit_index=self.commit, last_applied=self.commit,
                         first_index=self.first_index, last_index=last.index, last_term=last.term,
                         changed_from=changed_from, changed_prev_term=prev, changed=changed)


def steady_run(steps: int, corrupt=None):
    """Yield (step, states) for a legal 3-node run: every step the leader appends one entry and the
    followers catch up to all but the newest one; the leader commits what a majority holds once its
    newest replicated entry is of its own term; at steps 250, 750, 1250, 1750 leadership moves to
    the next node in a new term (the old leader's unreplicated entry is truncated and replaced);
    every 100 steps each node compacts its log up to 10 entries below its commit index.

    ``corrupt(step, states)`` may return altered states for a step, to plant a violation."""
    ids = ("n1", "n2", "n3")
    nodes = {i: _Replica(i) for i in ids}
    term, leader = 1, "n1"
    for step in range(1, steps + 1):
        if step % 500 == 250:
            term, leader = term + 1, ids[term % len(ids)]
        lead = nodes[leader]
        lead.log.append(Entry(len(lead.log) + 1, term, cmd(len(lead.log) + 1, term)))
        lead._mark(len(lead.log))
        followers = [nodes[i] for i in ids if i != leader]
        for f in followers:
            f.copy_from(lead.log, len(lead.log) - 1)
        leader_commit_before = lead.commit
        replicated = len(lead.log) - 1
        if lead.log[replicated - 1].term == term:
            lead.commit = max(lead.commit, replicated)
        for f in followers:
            f.commit = max(f.commit, min(leader_commit_before, len(f.log)))
        if step % 100 == 0:
            for n in nodes.values():
                n.first_index = max(n.first_index, n.commit - 10)
        states = [nodes[i].observe(term, LEADER if i == leader else FOLLOWER) for i in ids]
        if corrupt is not None:
            states = corrupt(step, states)
        yield step, states


def test_checker_accepts_a_long_valid_run():
    """2,000 steps of a legal run (with leader changes, truncations and compaction) stay valid,
    and the checker saw every entry committed."""
    checker = SafetyChecker()
    for step, states in steady_run(2000):
        checker.step(states)
    assert checker.steps == 2000
    assert len(checker.logs.committed) >= 1990
    assert checker.logs.highest_committed_before(10 ** 6)[1] == 5  # leadership moved at steps 250, 750, 1250, 1750


def _plant(at: int, change):
    def corrupt(step, states):
        return [change(s) for s in states] if step == at else states
    return corrupt


def _other_command(s: NodeState) -> NodeState:
    """n2's newest entry gets a different command (same index and term as the leader's)."""
    if s.id != "n2":
        return s
    last = s.changed[-1]
    bad = Entry(last.index, last.term, b"corrupted")
    return NodeState(**{**vars(s), "changed": s.changed[:-1] + (bad,)})


def _n3_also_leads(s: NodeState) -> NodeState:
    return NodeState(**{**vars(s), "role": LEADER}) if s.id == "n3" else s


def _n2_commit_back(s: NodeState) -> NodeState:
    return NodeState(**{**vars(s), "commit_index": s.commit_index - 5}) if s.id == "n2" else s


@pytest.mark.parametrize("change, invariant, nodes", [
    (_other_command, "log_matching", ("n1", "n2")),  # n1 (leader of term 4) wrote that entry first
    (_n3_also_leads, "election_safety", ("n1", "n3")),
    (_n2_commit_back, "state_machine_safety", ("n2",)),
], ids=["log_matching", "election_safety", "state_machine_safety"])
def test_checker_catches_a_violation_at_step_1500_of_a_long_run(change, invariant, nodes):
    """The same long run with one bad observation planted at step 1,500 (n1 leads term 4 then):
    accepted up to step 1,499, rejected exactly at step 1,500 with the planted violation."""
    checker = SafetyChecker()
    violations: Tuple[Violation, ...] = ()
    for step, states in steady_run(2000, corrupt=_plant(1500, change)):
        if step == 1500:
            violations = rejected(checker, states)
            break
        checker.step(states)
    assert checker.steps == 1500
    assert names(violations) == [invariant]
    assert violations[0].nodes == nodes
