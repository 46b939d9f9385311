"""What a failing state-machine test means: a known pysyncobj bug is an expected failure, a NEW one fails.

When a RaftMachine test fails, pytest's report is rewritten here (from the plugin's
``pytest_runtest_makereport``): the counterexample (Hypothesis' shrunk one where the profile shrinks,
else the first failing example) is triaged and minimised
(:mod:`harness.ledger.verdicts`), a section with the verdict and the minimised, runnable steps is
added, and a failure whose violation a ledger fix removes becomes ``XFAIL ... known pysyncobj bug N:
title`` — unless ``--raft-strict-known`` asks for it to fail like any other (pysyncobj's maintainers
want that).  Hypothesis has saved the counterexample in its database either way.
"""
from __future__ import annotations

from typing import Any, Optional

from harness.fuzz import machine as _machine
from harness.ledger.verdicts import Named, name_failure


def take_failure() -> Optional["_machine.Failure"]:
    """The record of the last failing example in this process, cleared so the next test starts afresh."""
    failure, _machine.last_failure = _machine.last_failure, None
    return failure


def judge(report: Any, strict: bool, triage_seconds: float, minimize_seconds: float) -> Optional[Named]:
    """Name the failure behind a failed ``call`` report of a machine test, and mark it xfail if known."""
    failure = take_failure()
    if failure is None or report.when != "call" or not report.failed:
        return None
    if triage_seconds <= 0:
        return None
    named = name_failure(failure.machine, failure.steps, failure.patches, failure.invariants,
                         triage_seconds=triage_seconds, minimize_seconds=minimize_seconds)
    verdict, minimized = named.verdict, named.minimized
    lines = [f"triage: {verdict.label}" + (f" ({verdict.note})" if verdict.note else ""),
             f"replays: {verdict.replays} in {verdict.seconds:.1f} s" + (" (time bound reached)" if verdict.cut_short else "")]
    if minimized is not None:
        lines.append(f"minimised: {minimized.original} -> {len(minimized.steps)} steps "
                     f"({'1-minimal' if minimized.complete else 'time bound reached: smaller, not proven 1-minimal'})")
    lines += ["", named.code]
    report.sections.append(("raft-harness: which bug", "\n".join(lines)))
    if verdict.is_known and not strict:
        report.outcome = "skipped"
        report.wasxfail = verdict.reason
    return named
