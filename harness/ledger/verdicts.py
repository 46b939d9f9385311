"""One failure, named: triage it, minimise its steps under the same label, and keep both with it.

Used wherever a counterexample surfaces: the campaign's distinct-bug table, the main job's expected
failures, ``counterexample.json`` and ``report.html``.  Both searches are bounded in wall time and say
when the bound cut them short.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

from harness.fuzz.minimize import Minimized, as_code, minimize
from harness.ledger.triage import NOT_REPRODUCED, Verdict, still_fails_like, triage

#: Wall-clock bounds (seconds) for one failure: triage (one replay per fix), then the minimiser.
TRIAGE_SECONDS = 120.0
MINIMIZE_SECONDS = 60.0


@dataclasses.dataclass
class Named:
    """A failure with its verdict and its minimised steps."""

    verdict: Verdict
    minimized: Optional[Minimized]
    code: str  # the minimised steps as runnable lines

    def as_fields(self) -> Dict[str, Any]:
        """What goes into ``counterexample.json``."""
        fields: Dict[str, Any] = {"triage": self.verdict.as_dict()}
        if self.minimized is not None:
            fields["minimized"] = dict(self.minimized.as_dict(), code=self.code)
        return fields


def name_failure(machine: type, steps: Sequence[Dict[str, Any]], patches: Sequence[str],
                 invariants: Sequence[str], triage_seconds: float = TRIAGE_SECONDS,
                 minimize_seconds: float = MINIMIZE_SECONDS) -> Named:
    """Triage ``steps`` (recorded with ``patches``), then minimise them keeping the same label."""
    verdict = triage(machine, steps, patches, invariants, max_seconds=triage_seconds)
    if verdict.label == NOT_REPRODUCED or minimize_seconds <= 0:
        return Named(verdict, None, as_code([s for s in steps if s.get("rule") != "teardown"], machine.__name__))
    wanted: List[str] = list(invariants) or list(verdict.invariants)
    result = minimize(steps, still_fails_like(machine, patches, wanted, verdict), max_seconds=minimize_seconds)
    return Named(verdict, result, as_code(result.steps, machine.__name__))


def from_report(doc: Dict[str, Any], machine: type, **bounds: float) -> Named:
    """:func:`name_failure` for a loaded ``counterexample.json``."""
    invariants = sorted({str(v.get("invariant")) for v in doc.get("violations") or ()})
    return name_failure(machine, doc["steps"], [str(p) for p in doc.get("patches") or ()], invariants, **bounds)
