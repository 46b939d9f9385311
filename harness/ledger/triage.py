"""Triage: which known bug a counterexample is, decided by replaying it with each fix installed.

The simulation is deterministic, so replaying the same steps with the fix for bug N installed answers
exactly one question: does the violation go away?  If it does, the failure is ``known: finding N``;
if it needs two fixes together, ``known: findings N+M``; if no fix (or pair) removes it, ``NEW``.
A failure that a machine recognised by its symptom as a ledger bug without a fix (``symptom_of``) is
``symptom of finding N``, which is not "known": nothing confirmed it.
A known label is only ever given when a fix removed the violation, so a harness bug cannot be called known,
and a run with an injected bug installed (``harness.adapter.injected_bugs``) is labelled by that bug,
never as a pysyncobj one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from harness.adapter.injected_bugs import INJECTED_BUGS
from harness.adapter.patching import MutationNotApplicable, inject
from harness.ledger.bugs import LEDGER, applicable

NEW = "NEW"
NOT_REPRODUCED = "not reproduced"
#: The label's start for a failure recognised by its symptom as a ledger bug without a fix: not "known",
#: since no fix confirmed it (see harness.fuzz.batteries.BatteryFinding).
SYMPTOM = "symptom of finding "

Steps = Sequence[Dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The label of one failure, and how it was reached."""

    label: str  # "known: finding 12", "known: findings 3+12", "NEW", "injected: <bug>", "symptom of finding 17",
    # "not reproduced"
    known: Tuple[int, ...] = ()  # ledger ids whose fixes (together) remove the violation
    invariants: Tuple[str, ...] = ()  # what the counterexample breaks, as replayed
    replays: int = 0
    seconds: float = 0.0
    cut_short: bool = False  # the time bound stopped the search before every fix (pair) was tried
    note: str = ""

    @property
    def is_known(self) -> bool:
        return bool(self.known)

    @property
    def reason(self) -> str:
        """One line for an expected failure: which bug, in words."""
        if not self.known:
            return self.label
        bugs = [LEDGER[i] for i in self.known]
        return "; ".join(b.label for b in bugs)

    def as_dict(self) -> Dict[str, Any]:
        return dict(dataclasses.asdict(self), known=list(self.known), invariants=list(self.invariants))


def _violations(error: Optional[BaseException]) -> Tuple[str, ...]:
    if error is None:
        return ()
    names = sorted({v.invariant for v in getattr(error, "violations", ())})
    return tuple(names) or (type(error).__name__,)


class Replayer:
    """Replays one machine's steps under a set of patches; counts replays for the report."""

    def __init__(self, machine: type, patches: Sequence[str] = ()) -> None:
        self.machine = machine
        self.patches = tuple(patches)
        self.replays = 0
        self.last_error: Optional[BaseException] = None

    def breaks(self, steps: Steps, extra: Sequence[str] = ()) -> Tuple[str, ...]:
        """The invariants the steps break with ``extra`` patches on top of the recorded ones."""
        self.replays += 1
        patches = (*self.patches, *extra)
        with inject(*patches) if patches else contextlib.nullcontext():
            run = self.machine.replay(steps, detailed=False)
        self.last_error = run.error
        return _violations(run.error)

    @property
    def symptom(self) -> Optional[int]:
        """The ledger id the last replay's failure was recognised as by its symptom (``symptom_of``, e.g.
        a battery machine's ``BatteryFinding``), for bugs that have no fix to replay with."""
        return getattr(self.last_error, "symptom_of", None)


def reach(machine: type) -> str:
    """The network class whose bugs ``machine`` can meet: a fifo cluster whose old connections stay
    readable (``old_connections_readable``) delivers a peer's messages out of order across
    connections, so it meets the bugs that need reordering too."""
    options = getattr(machine, "cluster_options", None) or {}
    return "unreliable" if options.get("old_connections_readable") else machine.network


def symptom_label(bug: Optional[int]) -> str:
    return f"{SYMPTOM}{bug}"


def label_for(known: Sequence[int]) -> str:
    ids = sorted(known)
    return f"known: finding {ids[0]}" if len(ids) == 1 else "known: findings " + "+".join(map(str, ids))


def triage(machine: type, steps: Steps, patches: Sequence[str] = (), invariants: Sequence[str] = (),
           max_seconds: float = 120.0, clock: Callable[[], float] = time.monotonic) -> Verdict:
    """Label the counterexample ``steps`` of ``machine`` (recorded with ``patches`` installed).

    ``invariants`` are the properties the original failure broke; the replay must break one of them
    or the verdict is "not reproduced".  Single fixes are tried first, then pairs, within ``max_seconds``.
    """
    start = clock()
    replayer = Replayer(machine, patches)
    broken = replayer.breaks(steps)
    wanted = set(invariants) or set(broken)

    def verdict(label: str, known: Sequence[int] = (), cut: bool = False, note: str = "") -> Verdict:
        return Verdict(label, tuple(sorted(known)), broken, replayer.replays, round(clock() - start, 3), cut, note)

    if not set(broken) & wanted:
        return verdict(NOT_REPRODUCED, note=f"the replay broke {list(broken) or 'nothing'}, not {sorted(wanted)}")
    injected = [p for p in patches if p in INJECTED_BUGS]
    if injected:
        return verdict("injected: " + "+".join(injected),
                       note="an injected bug was installed: never labelled as a pysyncobj bug")
    if replayer.symptom is not None:
        return verdict(symptom_label(replayer.symptom),
                       note="recognised by its symptom; that bug has no fix to confirm it by replay")
    candidates = [b for b in applicable(reach(machine)) if b.fix not in patches]

    def removed(bugs) -> bool:
        try:
            return not set(replayer.breaks(steps, [b.fix for b in bugs])) & wanted
        except MutationNotApplicable:
            return False

    singles = []
    for bug in candidates:
        if clock() - start > max_seconds:
            return verdict(label_for(b.id for b in singles) if singles else NEW, [b.id for b in singles], cut=True)
        if removed([bug]):
            singles.append(bug)
    if singles:
        return verdict(label_for([b.id for b in singles][:1]) if len(singles) == 1 else
                       "known: finding " + " or ".join(str(b.id) for b in singles), [b.id for b in singles],
                       note="" if len(singles) == 1 else "each of these fixes alone removes it")
    for pair in itertools.combinations(candidates, 2):
        if clock() - start > max_seconds:
            return verdict(NEW, cut=True, note="the time bound stopped the search among pairs of fixes")
        if removed(pair):
            return verdict(label_for([b.id for b in pair]), [b.id for b in pair])
    return verdict(NEW, note=f"no fix of {[b.id for b in candidates]} (alone or paired) removes it")


def still_fails_like(machine: type, patches: Sequence[str], invariants: Sequence[str],
                     verdict: Verdict) -> Callable[[Steps], bool]:
    """A predicate for the minimiser: a candidate breaks one of ``invariants`` and keeps ``verdict``'s
    label: for a known bug its fix (or pair of fixes) still removes the violation; for a NEW one no
    single applicable fix does."""
    replayer = Replayer(machine, patches)
    wanted = set(invariants)
    fixes = [LEDGER[i].fix for i in verdict.known]
    if " or " in verdict.label:
        fixes = fixes[:1]  # each alone removes it: keeping one of them is keeping the label
    others = [b.fix for b in applicable(reach(machine)) if b.fix not in patches]

    def predicate(candidate: Steps) -> bool:
        if not set(replayer.breaks(candidate)) & wanted:
            return False
        if verdict.label.startswith(SYMPTOM):
            return verdict.label == symptom_label(replayer.symptom)
        if fixes:
            return not set(replayer.breaks(candidate, fixes)) & wanted
        if verdict.label == NEW:
            return all(set(replayer.breaks(candidate, [fix])) & wanted for fix in others)
        return True

    predicate.replayer = replayer  # type: ignore[attr-defined]
    return predicate
