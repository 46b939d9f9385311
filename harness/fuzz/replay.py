"""Replaying recorded steps on a machine: the same rules, the same invariants, no Hypothesis engine.

Steps are explicit values and the simulation is deterministic, so a recording replays exactly.  The
machine runs its own invariants after every step (the ones Hypothesis would run, in the same order)
and its teardown at the end; the result carries the trace digest of every step, which is how two
replays, or a replay and its recording, are compared.  Used by ``raft-harness replay``, by triage
(one replay per fix) and by the minimiser.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from hypothesis.stateful import INITIALIZE_RULE_MARKER, INVARIANT_MARKER, RuleBasedStateMachine

from harness.fuzz.recording import Recorder


class ReplayError(ValueError):
    """The recording does not fit the machine (unknown rule, other arguments): one line, no traceback."""


@dataclasses.dataclass
class ReplayRun:
    """What one replay did: the error it ended with (None: it passed), and per step the digest and rule."""

    error: Optional[BaseException]
    digests: List[Optional[str]]
    rules: List[str]

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def headline(self) -> str:
        if self.error is None:
            return "passed"
        first = str(self.error).strip().splitlines()
        return f"{type(self.error).__name__}: {first[0] if first else ''}"

    @property
    def invariants(self) -> List[str]:
        return sorted({v.invariant for v in getattr(self.error, "violations", ())}) or (
            [type(self.error).__name__] if self.error is not None else [])


def _search_path() -> List[str]:
    """Where recorded machine modules live: the working directory and a source checkout's test folders."""
    root = Path(__file__).resolve().parents[2]
    return [os.getcwd(), str(root), str(root / "tests"), str(root / "properties")]


@contextlib.contextmanager
def _importable(near: Optional[str] = None) -> Iterator[None]:
    extra = [os.path.dirname(os.path.abspath(near))] if near else []
    added = [p for p in extra + _search_path() if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)


def load_machine(name: str, near: Optional[str] = None) -> Optional[type]:
    """The state machine class ``module.Qual.Name`` a recording names, or None if it cannot be imported;
    ``near``: the file the recording says the module was (its folder is searched first)."""
    parts = name.split(".")
    if "<locals>" in parts:
        return None
    with _importable(near):
        for i in range(len(parts) - 1, 0, -1):
            module_name = ".".join(parts[:i])
            try:
                obj = importlib.import_module(module_name)
            except Exception:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                continue
            if inspect.isclass(obj) and issubclass(obj, RuleBasedStateMachine):
                return obj
    return None


def default_machine(network: str) -> type:
    """The library's machine for a channel model: what a recording or blob replays on when its class is gone."""
    from harness.fuzz.machine import RaftMachine, UnreliableNetworkRules

    base = UnreliableNetworkRules if network == "unreliable" else RaftMachine
    if base.network == network:
        return base
    return type(f"Replayed{base.__name__}", (base,), {"network": network, "__module__": __name__})


def _rule_args(args: Dict[str, Any]) -> Dict[str, Any]:
    # Rule arguments are plain values; frozensets (partition sides) are stored as sorted lists.
    return {k: frozenset(v) if isinstance(v, list) else v for k, v in args.items()}


def _marked(cls: type, marker: str) -> List[Any]:
    """The rule or invariant objects Hypothesis' decorators left on ``cls``, in Hypothesis' (name) order."""
    found = []
    for _, value in inspect.getmembers(cls):
        mark = getattr(value, marker, None)
        if mark is not None:
            found.append(mark)
    return found


def check_invariants(machine: RuleBasedStateMachine, during_init: bool) -> None:
    """Run the machine's ``@invariant`` methods as Hypothesis does after a step."""
    for inv in _marked(type(machine), INVARIANT_MARKER):
        if during_init and not inv.check_during_init:
            continue
        if all(p(machine) for p in inv.preconditions):
            inv.function(machine)


@contextlib.contextmanager
def replay_support(near: Optional[str] = None) -> Iterator[None]:
    """Let recorded machine modules (``properties/``, ``tests/``, the folder of ``near``) be imported while
    replaying."""
    with _importable(near):
        yield


def detailed_recording(machine: RuleBasedStateMachine) -> None:
    """Make a fresh machine record per-step digests and messages, and write no report of its own."""
    if hasattr(machine, "recorder"):
        machine.recorder = Recorder(detailed=True)
    if hasattr(machine, "report_dir"):
        machine.report_dir = None


def replay_steps(cls: type, steps: Sequence[Dict[str, Any]], detailed: bool = True) -> ReplayRun:
    """Run recorded ``steps`` on a fresh ``cls()``: invariants after each step, then teardown.

    ``detailed`` records per-step digests (to compare two replays); triage and the minimiser only need
    the outcome and turn it off.  Either way nothing is written to disk.
    """
    machine = cls()
    if detailed:
        detailed_recording(machine)
    elif hasattr(machine, "report_dir"):
        machine.report_dir = None
    pending = {m.function.__name__ for m in _marked(cls, INITIALIZE_RULE_MARKER)}
    error: Optional[BaseException] = None
    try:
        for step in steps:
            rule = step["rule"]
            if rule == "teardown":
                continue
            fn = getattr(machine, rule, None)
            if not callable(fn):
                raise ReplayError(f"{cls.__module__}.{cls.__qualname__} has no rule {rule!r}; "
                                  f"the report was recorded with another machine (try --machine)")
            args = _rule_args(step.get("args") or {})
            try:
                inspect.signature(fn).bind(**args)
            except TypeError as e:
                raise ReplayError(f"{cls.__qualname__}.{rule} does not take the recorded arguments {sorted(args)} "
                                  f"({e}); the report was recorded with another machine (try --machine)") from None
            fn(**args)
            pending.discard(rule)
            check_invariants(machine, during_init=bool(pending))
    except ReplayError:
        with contextlib.suppress(Exception):
            machine.teardown()
        raise
    except Exception as e:
        error = e
    try:
        machine.teardown()
    except Exception as e:
        if error is None:
            error = e
    recorder = getattr(machine, "recorder", None)
    done = list(getattr(recorder, "steps", ()))
    return ReplayRun(error, [s.digest for s in done], [s.rule for s in done])
