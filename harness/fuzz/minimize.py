"""Delta debugging over a shrunk counterexample's steps, until no single step can be removed.

Hypothesis shrinks the choice sequence, not the list of steps a reader sees, so a shrunk failure can
still carry steps that do nothing (a second ``crash`` of a crashed node, four ``add_readonly_node``).
Steps are explicit values and replay is exact, so removing steps and asking the replay whether the
same violation (same invariant, same triage label) remains is sound: the result is 1-minimal.  Passes:
first remove runs of steps, halving their length (delta debugging's chunks: a long counterexample
loses most of its steps in a few replays, which matters when each replay of a failure runs a full
liveness wait), then single steps until none can go, then pairs (then singles again), then simpler
arguments where an order exists (fewer nodes, shorter waits, smaller sides).  The search is bounded in
wall time; the result says whether the bound cut it short, in which case it is smaller but not proven
1-minimal.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from harness.fuzz.recording import step_code

Step = Dict[str, Any]


@dataclasses.dataclass
class Minimized:
    steps: List[Step]
    original: int  # steps before
    complete: bool  # True: 1-minimal (no single step can be removed); False: the time bound cut it short
    tried: int  # candidates replayed
    seconds: float

    def as_dict(self) -> Dict[str, Any]:
        return dict(steps=self.steps, original=self.original, minimized=len(self.steps), complete=self.complete,
                    tried=self.tried, seconds=self.seconds)


def _plain(step: Step) -> Step:
    return {"rule": step["rule"], "args": dict(step.get("args") or {})}


def _simpler_values(name: str, value: Any) -> Iterator[Any]:
    """Smaller values of one argument, simplest first (only where smaller means simpler)."""
    if isinstance(value, bool) or name == "seed":
        return
    if isinstance(value, int):
        yield from range(1, value)
    elif isinstance(value, float):
        for v in (0.05, 0.25, 0.5, 1.0, 2.0):
            if v < value:
                yield v
    elif isinstance(value, list) and len(value) > 1:
        for i in range(len(value)):
            yield value[:i] + value[i + 1:]


def minimize(steps: Sequence[Step], still_fails: Callable[[List[Step]], bool], max_seconds: float = 60.0,
             keep_first: bool = True, clock: Callable[[], float] = time.monotonic) -> Minimized:
    """The smallest list of ``steps`` (a subsequence, with simpler arguments) for which ``still_fails``.

    ``keep_first`` keeps the first step (the machine's ``start_cluster`` initialisation).  The input
    is assumed to fail; it is returned unchanged if nothing smaller does.
    """
    start = clock()
    current = [_plain(s) for s in steps if s.get("rule") != "teardown"]
    original = len(current)
    first = 1 if keep_first else 0  # the first step a pass may remove
    tried = 0

    def out_of_time() -> bool:
        return clock() - start > max_seconds

    def attempt(candidate: List[Step]) -> bool:
        nonlocal tried
        tried += 1
        return still_fails(candidate)

    def drop_runs() -> bool:
        """Remove runs of steps, from the end, their length halving down to 2; False if time ran out."""
        size = (len(current) - first) // 2
        while size >= 2:
            i = len(current) - size
            while i >= first:
                if out_of_time():
                    return False
                candidate = current[:i] + current[i + size:]
                if attempt(candidate):
                    current[:] = candidate
                i = min(i - size, len(current) - size)
            size //= 2
        return not out_of_time()

    def drop_singles() -> Optional[bool]:
        """Remove single steps to a fixpoint; None if time ran out, else whether anything went."""
        changed = False
        i = len(current) - 1
        while i >= first:
            if out_of_time():
                return None
            candidate = current[:i] + current[i + 1:]
            if attempt(candidate):
                current[:] = candidate
                changed = True
            i -= 1
        return changed

    def drop_pairs() -> Optional[bool]:
        for i in reversed(range(first, len(current))):
            for j in reversed(range(i + 1, len(current))):
                if out_of_time():
                    return None
                candidate = current[:i] + current[i + 1:j] + current[j + 1:]
                if attempt(candidate):
                    current[:] = candidate
                    return True
        return False

    def simplify_args() -> Optional[bool]:
        changed = False
        for i, step in enumerate(current):
            for name in sorted(step["args"]):
                for value in _simpler_values(name, step["args"][name]):
                    if out_of_time():
                        return None
                    candidate = list(current)
                    candidate[i] = {"rule": step["rule"], "args": dict(step["args"], **{name: value})}
                    if attempt(candidate):
                        current[:] = candidate
                        step = candidate[i]
                        changed = True
                        break
        return changed

    complete = drop_runs()
    while complete:
        singles = drop_singles()
        if singles is None:
            complete = False
            break
        pairs = drop_pairs()
        if pairs is None:
            complete = False
            break
        if pairs:
            continue
        args = simplify_args()
        if args is None:
            complete = False
            break
        if not args:
            break
    return Minimized(current, original, complete, tried, round(clock() - start, 3))


def as_code(steps: Sequence[Step], machine_name: str) -> str:
    """The steps as the runnable lines Hypothesis prints (``state = M()``, ``state.rule(arg=...)``)."""
    return "\n".join([f"state = {machine_name}()"] + [step_code(s["rule"], s.get("args") or {}) for s in steps]
                     + ["state.teardown()"])
