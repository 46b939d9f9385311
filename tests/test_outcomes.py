"""The main job's verdict: a known pysyncobj bug is an expected failure naming it, a new one fails the run.

Each test writes a small project (``pytester``) whose test replays fixed machine steps and raises what
the machine broke, exactly as a failing Hypothesis state-machine test ends: the plugin finds the
machine's failure record, triages it and rewrites the report.
"""
from __future__ import annotations

import re
import textwrap

import pytest

from test_plugin import project, run  # noqa: F401  (the fixture and helper of a project with the plugin)

pytest_plugins = ["pytester"]

_STEPS = textwrap.dedent("""
    from harness.fuzz.replay import default_machine
    import sys
    sys.path.insert(0, {tests!r})
    from cli_machines import InjectedBugRaft

    def step(rule, **args):
        return {{"rule": rule, "args": args}}

    # finding 3: an isolated leader takes writes, the others compact past them, then the heal
    KNOWN = ([step("start_cluster", nodes=3, seed=0), step("wait", seconds=2.0), step("isolate", node="n3")]
             + [step("write", key="a", via="n3") for _ in range(5)] + [step("wait", seconds=8.0)]
             + [step("write", key="b", via="leader") for _ in range(6)]
             + [step("snapshot", node="n1"), step("snapshot", node="n2"), step("wait", seconds=0.5),
                step("heal"), step("wait", seconds=8.0)])
    # the harness' own test invariant: no pysyncobj fix can remove it
    NEW = [step("start_cluster", nodes=3, seed=5), step("wait", seconds=2.0), step("write", key="a", via="leader"),
           step("write", key="a", via="leader"), step("wait", seconds=2.0)]

    def fail_like_a_machine(machine, steps):
        run = machine.replay(steps, detailed=False)
        assert run.error is not None, "the steps no longer fail"
        raise run.error
""")


def _write(project, body: str) -> None:
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    project.makepyfile(test_machine=_STEPS.format(tests=tests) + textwrap.dedent(body))


def test_a_known_bug_is_an_expected_failure_that_names_it(project):  # noqa: F811
    _write(project, """
        def test_known():
            fail_like_a_machine(default_machine("fifo"), KNOWN)
    """)
    result = run(project, "-rxX", "--raft-minimize-seconds=0")
    result.assert_outcomes(xfailed=1)
    assert "known pysyncobj bug 3: a deposed leader acknowledges" in result.stdout.str()


def test_strict_known_makes_a_known_bug_fail(project):  # noqa: F811
    _write(project, """
        def test_known():
            fail_like_a_machine(default_machine("fifo"), KNOWN)
    """)
    result = run(project, "--raft-strict-known", "--raft-minimize-seconds=0")
    result.assert_outcomes(failed=1)
    assert "triage: known: finding 3" in result.stdout.str()


def test_a_new_bug_fails_with_its_minimised_steps(project):  # noqa: F811
    _write(project, """
        def test_new():
            fail_like_a_machine(InjectedBugRaft, NEW)
    """)
    result = run(project, "--raft-minimize-seconds=20")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "triage: NEW" in out and "state = InjectedBugRaft()" in out
    # the record holds the steps up to the failing one; the minimiser then needs fewer nodes, not fewer steps
    assert "minimised: 3 -> 3 steps (1-minimal)" in out and "state.start_cluster(nodes=1, seed=5)" in out


def test_only_the_failing_test_s_own_machine_failure_is_judged(project):  # noqa: F811
    """A machine failure a test expected (pytest.raises) is not blamed on the next test that fails."""
    _write(project, """
        import pytest

        def test_expects_the_failure():
            with pytest.raises(AssertionError):
                fail_like_a_machine(default_machine("fifo"), KNOWN)

        def test_fails_for_another_reason():
            assert 1 == 2
    """)
    result = run(project, "-p", "no:randomly", "--raft-minimize-seconds=0")
    result.assert_outcomes(passed=1, failed=1)
    assert "which bug" not in result.stdout.str()


@pytest.mark.parametrize("profile", ["raft-dev", "raft-ci"])
def test_hypothesis_stops_at_the_first_failure_and_the_plugin_minimises_it(project, profile):  # noqa: F811
    """raft-dev and raft-ci have no shrink phase: the failure as generated is triaged, then minimised
    within the plugin's bound."""
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    project.makepyfile(test_machine=textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {tests!r})
        from cli_machines import InjectedBugRaft

        TestInjectedBug = InjectedBugRaft.TestCase
    """))
    result = run(project, f"--hypothesis-profile={profile}", "--hypothesis-show-statistics",
                 "--raft-minimize-seconds=30")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "during generate phase" in out and "during shrink phase" not in out
    assert "triage: NEW" in out and "state = InjectedBugRaft()" in out
    shrunk = re.search(r"minimised: (\d+) -> (\d+) steps \(1-minimal\)", out)
    assert shrunk is not None, out
