"""Triage names a failure only when a fix removes it; the minimiser keeps that name and reaches 1-minimal."""
from __future__ import annotations

import itertools
from typing import List

import pytest

from harness.adapter.observe import VERSION_INFO
from harness.fuzz.minimize import as_code, minimize
from harness.fuzz.replay import default_machine
from harness.ledger.triage import NEW, NOT_REPRODUCED, still_fails_like, triage
from harness.ledger.verdicts import name_failure

from cli_machines import InjectedBugRaft

FIFO = default_machine("fifo")


def _step(rule, **args):
    return {"rule": rule, "args": args}


def _deposed_leader_meets_a_snapshot(seed: int = 0, leader: str = "n3") -> List[dict]:
    """Finding 3 as machine steps: an isolated leader takes writes, the others compact, then the heal."""
    others = [n for n in ("n1", "n2", "n3") if n != leader]
    return ([_step("start_cluster", nodes=3, seed=seed), _step("wait", seconds=2.0), _step("isolate", node=leader)]
            + [_step("write", key="a", via=leader) for _ in range(5)] + [_step("wait", seconds=8.0)]
            + [_step("write", key="b", via="leader") for _ in range(6)]
            + [_step("snapshot", node=o) for o in others]
            + [_step("wait", seconds=0.5), _step("heal"), _step("wait", seconds=8.0)])


# --- the minimiser on its own -------------------------------------------------------------------------
def _contains(*rules):
    def predicate(steps):
        it = iter(s["rule"] for s in steps)
        return all(any(r == x for x in it) for r in rules)  # the rules appear in this order
    return predicate


def test_minimize_reaches_a_1_minimal_subsequence():
    steps = [_step(r) for r in ("start", "x", "a", "y", "y", "b", "z", "c", "x")]
    result = minimize(steps, _contains("start", "a", "b", "c"))
    assert [s["rule"] for s in result.steps] == ["start", "a", "b", "c"]
    assert result.complete and result.original == 9


def test_minimize_drops_long_runs_of_irrelevant_steps_in_few_replays():
    # one replay per step, as single removals alone need, is what a failing liveness replay cannot afford
    steps = [_step("start")] + [_step("x") for _ in range(120)]
    steps[30], steps[100] = _step("a"), _step("b")
    result = minimize(steps, _contains("start", "a", "b"))
    assert [s["rule"] for s in result.steps] == ["start", "a", "b"] and result.complete
    assert result.tried < 60, result.tried


def test_minimize_removes_pairs_that_only_go_together():
    # 'p' and 'q' must both stay or both go: no single removal helps, a pair does
    def predicate(steps):
        rules = [s["rule"] for s in steps]
        return "a" in rules and rules.count("p") == rules.count("q")
    steps = [_step("start"), _step("p"), _step("a"), _step("q")]
    result = minimize(steps, predicate)
    assert [s["rule"] for s in result.steps] == ["start", "a"]


def test_minimize_simplifies_ordered_arguments():
    steps = [_step("start", nodes=5, seed=99), _step("wait", seconds=8.0), _step("partition", side=["n1", "n2", "n3"])]
    result = minimize(steps, lambda s: len(s) == 3 and s[0]["args"]["nodes"] >= 3 and len(s[2]["args"]["side"]) >= 2)
    assert result.steps[0]["args"] == {"nodes": 3, "seed": 99}  # seeds are not "simpler" when smaller
    assert result.steps[1]["args"] == {"seconds": 0.05}
    assert len(result.steps[2]["args"]["side"]) == 2


def test_minimize_keeps_the_initialisation_step():
    result = minimize([_step("start"), _step("a")], _contains("a"))
    assert [s["rule"] for s in result.steps] == ["start", "a"]


def test_minimize_says_when_its_time_bound_cut_it_short():
    ticks = itertools.count()
    result = minimize([_step(str(i)) for i in range(20)], lambda s: True, max_seconds=3,
                      clock=lambda: float(next(ticks)))
    assert not result.complete
    assert len(result.steps) < 20


def test_as_code_prints_runnable_steps():
    code = as_code([_step("start_cluster", nodes=3, seed=1), _step("partition", side=["n2", "n1"])], "FifoRaft")
    assert code.splitlines() == ["state = FifoRaft()", "state.start_cluster(nodes=3, seed=1)",
                                 "state.partition(side=frozenset(['n1', 'n2']))", "state.teardown()"]


# --- triage ---------------------------------------------------------------------------------------------
def test_a_failure_that_a_fix_removes_is_known_and_the_fix_really_removes_it():
    steps = _deposed_leader_meets_a_snapshot()
    assert FIFO.replay(steps, detailed=False).failed
    verdict = triage(FIFO, steps, (), ["state_machine_safety"])
    assert verdict.label == "known: finding 3" and verdict.known == (3,)
    assert "deposed leader" in verdict.reason


def test_a_failure_no_fix_removes_is_new():
    """InjectedBugRaft's 'bug' is the harness' own invariant: no pysyncobj fix can remove it."""
    steps = [_step("start_cluster", nodes=3, seed=5), _step("wait", seconds=2.0), _step("write", key="a", via="leader"),
             _step("write", key="a", via="leader"), _step("wait", seconds=2.0)]
    verdict = triage(InjectedBugRaft, steps, (), ["injected_bug"])
    assert verdict.label == NEW and not verdict.is_known
    assert verdict.replays >= 1 + 2  # the failure itself, then each applicable fix


def test_a_run_with_an_injected_bug_is_never_labelled_a_pysyncobj_bug():
    steps = _deposed_leader_meets_a_snapshot()
    verdict = triage(FIFO, steps, ("commit_quorum_off_by_one",), ["state_machine_safety"])
    assert verdict.label.startswith("injected: commit_quorum_off_by_one") and not verdict.is_known


def test_steps_that_pass_are_not_reproduced():
    steps = [_step("start_cluster", nodes=3, seed=0), _step("wait", seconds=2.0)]
    assert triage(FIFO, steps, (), ["state_machine_safety"]).label == NOT_REPRODUCED


@pytest.mark.skipif(VERSION_INFO[:3] < (0, 3, 12), reason="0.3.11 meets finding 8 on these steps first")
def test_minimised_steps_keep_the_label_and_no_single_step_can_go():
    steps = _deposed_leader_meets_a_snapshot()
    named = name_failure(FIFO, steps, (), ["state_machine_safety"], minimize_seconds=120)
    assert named.minimized is not None and named.minimized.complete
    small = named.minimized.steps
    assert len(small) < len(steps)
    assert triage(FIFO, small, (), ["state_machine_safety"]).label == named.verdict.label == "known: finding 3"
    keeps = still_fails_like(FIFO, (), ["state_machine_safety"], named.verdict)
    for i in range(1, len(small)):  # 1-minimal: without any one step it no longer fails the same way
        assert not keeps(small[:i] + small[i + 1:]), f"step {i} ({small[i]}) could go"
    assert named.code.startswith("state = RaftMachine()") and named.code.endswith("state.teardown()")
