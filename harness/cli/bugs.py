"""The end of a campaign: every counterexample named (triage), minimised, and counted as distinct bugs.

A campaign can find the same bug in several shards; what a user needs is one row per bug: which
ledger entry (or ``NEW`` with its invariants), how often it was hit, how soon, and the smallest
counterexample with its report.  Each counterexample keeps its verdict and its minimised steps in
``counterexample.json`` (and so in ``report.html``).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

from harness.cli.common import format_duration
from harness.fuzz.replay import default_machine, load_machine, replay_support
from harness.ledger.triage import SYMPTOM
from harness.ledger.verdicts import from_report
from harness.report import counterexample


@dataclasses.dataclass
class Hit:
    """One counterexample of the campaign with its verdict."""

    directory: str
    label: str
    invariants: Tuple[str, ...]
    steps: int  # after minimising
    seconds: Optional[float]  # since the campaign started, when it was first seen
    complete: bool  # the minimiser proved it 1-minimal

    @property
    def key(self) -> Tuple[str, ...]:
        """Known (or recognised) bugs are one row per label; NEW ones one row per set of broken invariants."""
        named = self.label.startswith(("known", "injected", SYMPTOM))
        return (self.label,) if named else (self.label,) + self.invariants


def name_reports(directories: Sequence[str], first_seen: Dict[str, float], out: TextIO,
                 triage_seconds: float, minimize_seconds: float) -> List[Hit]:
    """Triage and minimise every counterexample in ``directories`` that has not been named yet."""
    hits = []
    for directory in directories:
        try:
            doc, _ = counterexample.load_report(directory)
        except counterexample.ReportError as e:
            out.write(f"  {os.path.basename(directory)}: cannot triage ({e})\n")
            continue
        named = doc.get("triage")
        if named is None:
            near = doc.get("machine_file")
            with replay_support(near):
                machine = (load_machine(str(doc.get("machine") or ""), near)
                           or default_machine(str(doc.get("network"))))
                try:
                    result = from_report(doc, machine, triage_seconds=triage_seconds,
                                         minimize_seconds=minimize_seconds)
                except Exception as e:  # a replay that cannot run is reported, never hidden
                    out.write(f"  {os.path.basename(directory)}: triage failed: {type(e).__name__}: {e}\n")
                    continue
            counterexample.annotate(directory, **result.as_fields())
            doc.update(result.as_fields())
            named = doc["triage"]
        minimized = doc.get("minimized") or {}
        steps = int(minimized.get("minimized") or len([s for s in doc["steps"] if s.get("rule") != "teardown"]))
        hits.append(Hit(directory, str(named["label"]), tuple(named.get("invariants") or ()), steps,
                        first_seen.get(directory), bool(minimized.get("complete"))))
    return hits


def bug_table(hits: Sequence[Hit]) -> str:
    """One row per distinct bug: label, hits, seconds to the first hit, the smallest counterexample."""
    groups: Dict[Tuple[str, ...], List[Hit]] = {}
    for h in hits:
        groups.setdefault(h.key, []).append(h)
    rows = []
    for key, group in sorted(groups.items(), key=lambda kv: (not kv[0][0].startswith("known"), kv[0])):
        smallest = min(group, key=lambda h: (h.steps, h.directory))
        first = min((h.seconds for h in group if h.seconds is not None), default=None)
        bug = key[0] if len(key) == 1 else f"{key[0]} ({', '.join(key[1:])})"
        rows.append((bug, str(len(group)), format_duration(first) if first is not None else "-",
                     f"{smallest.steps}{'' if smallest.complete else '+'}",
                     os.path.join(smallest.directory, counterexample.REPORT_HTML)))
    header = ("bug", "hits", "first hit", "steps", "smallest counterexample")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    lines = ["", "distinct bugs", "-" * 60,
             "  ".join(h.ljust(w) for h, w in zip(header[:4], widths)) + "  " + header[4]]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    lines.append("(steps: after minimising; '+' where the time bound stopped the minimiser before it "
                 "proved that no step can go)")
    return "\n".join(lines)
