"""The seeded-bug suite: the harness must catch classic Raft bugs injected into pysyncobj.

A safety harness that never fails proves nothing.  Each test below injects one
bug from :mod:`harness.mutations` into pysyncobj (in-process, for that test
only), runs the fuzzing state machine with Hypothesis and asserts that a
safety violation is raised, and by which invariant.  A control test runs the
same machine on the unmodified pysyncobj and must stay green.

Settings: ``phases=[Phase.generate]`` and ``derandomize=True``, so each run is
a fixed sequence of examples and a budget either catches the bug or not, on
every run.  The sequence is derived from the source of the machine class
(``SeededFifo`` below) and from :class:`harness.stateful.RaftMachine`'s
behaviour: editing either, or upgrading Hypothesis or pysyncobj, shifts it,
and the budgets in :data:`SEEDED` must be measured again (see
``BUDGET_HEADROOM``).  Because every example that precedes a detection also
runs on the unmodified pysyncobj in the control, a detection within a budget
that the control passes is attributable to the injected bug
(``test_control_green_at_largest_budget`` checks that, with ``--runslow``).

The machine, ``SeededFifo``, is the project's :class:`RaftMachine` on the
``fifo`` network (pysyncobj's TCP contract) with three changes, each needed
for the control to be green, not for the bugs to be caught:

* the ``snapshot`` rule is off.  Unmodified pysyncobj 0.3.17 commits a stale
  log when a snapshot is being sent to a follower that has diverging entries
  (the first chunk of an ``append_entries`` carrying ``serialized`` advances
  the follower's commit index to ``min(leader commit, own last index)``
  without any log-consistency check), which the harness reports as a
  durability / state_machine_safety violation within a few hundred examples.
  That genuine pysyncobj bug would end every run before a seeded one is found.
* teardown's liveness check is replaced by a plain heal/restart/settle.  The
  harness' liveness check waits for a single write until its deadline, but
  pysyncobj legitimately never answers some writes (a proposal appended by a
  deposed leader at an index the new leader's log never reaches), so it
  reports false liveness failures within tens of examples.  The seeded bugs
  are safety bugs; the final safety and linearizability checks still run.
* the ``unreliable`` network is not used: pysyncobj is built for TCP, and on
  reordered/duplicated single messages it already breaks safety unmodified
  (a follower truncates below its commit index on a reordered
  ``append_entries``), within ~10 examples.
"""
from __future__ import annotations

import dataclasses
from typing import FrozenSet, Optional

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from pysyncobj.syncobj import SyncObj

from harness.invariants import SafetyViolation
from harness.mutations import MUTATIONS, Mutation, MutationNotApplicable, active, inject
from harness.stateful import RaftMachine


def _heal_and_settle(machine, seconds: float = 5.0) -> None:
    """Teardown without the liveness assertion: heal, restart every node, let the cluster run."""
    c = machine.cluster
    c.clear_all_filters()
    for node_id in c.node_ids:
        if not c.is_up(node_id):
            c.restart(node_id)
    c.run_for(seconds)


class SeededFifo(RaftMachine):
    """RaftMachine on the fifo network (pysyncobj's TCP contract), safety only, no forced snapshots."""

    network = "fifo"
    snapshot = None

    def _check_liveness(self) -> None:
        _heal_and_settle(self)


#: Steps per example for every run of this module.
STEPS = 40


@dataclasses.dataclass(frozen=True)
class Expect:
    """What one seeded bug must do to the harness."""

    budget: int  # max_examples: the smallest that catches it, plus headroom (see BUDGET_HEADROOM)
    invariants: FrozenSet[str]  # the violation must name at least one of these
    first_caught: int  # measured: smallest max_examples that catches it
    caught_by: str  # measured: the invariants the violation named
    seconds: float  # measured wall time of the test
    slow: bool = False


#: Filled in from measurements; see the module docstring.
SEEDED = {}

#: Bugs the machine does not catch within a reasonable budget, with the budget tried and why.
UNCAUGHT = {}

#: The budget is the measured first detection rounded up to leave room for small drifts.
BUDGET_HEADROOM = "budget = first_caught, rounded up by ~25% (at least +2)"

#: The control's small default budget.
CONTROL_BUDGET = 15


def _settings(budget: int) -> settings:
    return settings(max_examples=budget, stateful_step_count=STEPS, phases=[Phase.generate], database=None,
                    derandomize=True, deadline=None, suppress_health_check=list(HealthCheck),
                    print_blob=False)


def _run(budget: int) -> Optional[AssertionError]:
    try:
        run_state_machine_as_test(SeededFifo, settings=_settings(budget))
    except AssertionError as e:
        return e
    return None


def _cases():
    for name, expect in SEEDED.items():
        marks = [pytest.mark.fifo] + ([pytest.mark.slow] if expect.slow else [])
        yield pytest.param(name, marks=marks, id=name)


# --- the harness catches each seeded bug -----------------------------------------------------
@pytest.mark.parametrize("name", list(_cases()))
def test_seeded_bug_is_caught(name):
    expect = SEEDED[name]
    with inject(name):
        error = _run(expect.budget)
    assert not active(), f"{name} is still installed after the run"
    assert error is not None, (
        f"seeded bug {name!r} was NOT caught within {expect.budget} examples of {STEPS} steps "
        f"({MUTATIONS[name].title}); re-measure the budget if the machine or Hypothesis changed")
    assert isinstance(error, SafetyViolation), (
        f"seeded bug {name!r} ended the run with {type(error).__name__}, not a safety violation:\n{error}")
    caught = {v.invariant for v in error.violations}
    assert caught & expect.invariants, (
        f"seeded bug {name!r} was caught by {sorted(caught)}, expected one of {sorted(expect.invariants)}:\n"
        f"{error}")


# --- the control: the same machine on unmodified pysyncobj ------------------------------------
@pytest.mark.fifo
def test_control_unmodified_pysyncobj_is_green():
    assert not active()
    error = _run(CONTROL_BUDGET)
    assert error is None, f"unmodified pysyncobj failed the seeded-bug machine:\n{error}"


@pytest.mark.fifo
@pytest.mark.slow
def test_control_green_at_largest_budget():
    """Every detection above happens within a budget the unmodified pysyncobj passes: attribution."""
    budget = max(e.budget for e in SEEDED.values())
    error = _run(budget)
    assert error is None, f"unmodified pysyncobj failed within {budget} examples:\n{error}"


# --- the mutations themselves --------------------------------------------------------------
@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutation_changes_behaviour(name):
    """Each patch applies to the installed pysyncobj and its direct probe sees the bug (only) when injected."""
    MUTATIONS[name].verify()


def test_every_mutation_is_accounted_for():
    assert set(SEEDED) | set(UNCAUGHT) == set(MUTATIONS)
    assert not set(SEEDED) & set(UNCAUGHT)
    assert len(SEEDED) >= 6


def test_inject_restores_originals_also_on_error():
    names = ("vote_twice", "no_truncate", "commit_quorum_off_by_one")
    methods = {MUTATIONS[n].method for n in names}
    before = {m: vars(SyncObj)[m] for m in methods}
    with pytest.raises(RuntimeError, match="boom"):
        with inject(*names) as installed:
            assert [m.name for m in installed] == list(names)
            assert set(active().values()) <= set(names) and set(active()) == methods
            assert all(vars(SyncObj)[m] is not before[m] for m in methods)
            raise RuntimeError("boom")
    assert {m: vars(SyncObj)[m] for m in methods} == before
    assert not active()


def test_mutations_on_one_method_stack():
    first, second = MUTATIONS["vote_twice"], MUTATIONS["vote_stale_log"]
    assert first.method == second.method
    with inject(first.name, second.name):
        assert active() == {first.method: second.name}
        from harness.mutations import _run_probe  # the probes, without verify()'s own inject
        assert _run_probe(first) and _run_probe(second)
    assert not active()


def test_missing_code_is_reported_not_ignored():
    bogus = dataclasses.replace(MUTATIONS["vote_twice"], name="bogus", old="this code is not in pysyncobj\n")
    source = "def f(self):\n    return 1\n"
    with pytest.raises(MutationNotApplicable, match="does not have the code it patches"):
        bogus.patch_source(source)
    twice = dataclasses.replace(bogus, old="    return 1\n")
    with pytest.raises(MutationNotApplicable, match="exactly once"):
        twice.patch_source(source + source)
    with pytest.raises(KeyError, match="unknown mutation"):
        with inject("no_such_bug"):
            pass


def test_every_mutation_is_documented():
    for name, m in MUTATIONS.items():
        assert isinstance(m, Mutation) and m.name == name
        assert m.title and len(m.description) > 80, name
        assert "MUTATION" in m.new, f"{name}: the patched line should say so (it shows in tracebacks)"
