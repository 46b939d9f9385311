"""One test case per pytest-xdist worker for a state machine, so every core fuzzes every machine.

pytest-xdist schedules whole test items, and a state machine is one item: on
its own it keeps one core busy.  :func:`shard_cases` splits a machine into as
many test cases ("shards") as there are workers, each running its share of
the profile's ``max_examples``.

Two details make shards useful rather than redundant:

* **Seeds.** A derandomized profile (``ci``, ``bench``) seeds Hypothesis from
  the test function, which is the same function for every shard of a machine,
  so unseeded shards would all replay one example sequence.  Under
  ``derandomize`` each shard therefore gets its own fixed seed, derived from
  the machine's name and the shard number (stable across runs, processes and
  ``PYTHONHASHSEED``).  Other profiles draw a fresh seed per shard anyway, and
  ``raft-harness fuzz --seed`` derives one per test (:mod:`harness.fuzz.workers`).
* **One database key.** Every shard is a subclass with the machine's own name,
  so Hypothesis files all shards' failures under one key: a counterexample
  saved by any shard is replayed by all of them, also by a later run with a
  different ``-n``.

In a test module, :func:`raft_machine_tests` is the one line that does it::

    raft_machine_tests(CounterMachine)   # TestCounterMachineShard0, ... in this module
"""
from __future__ import annotations

import hashlib
import os
import sys
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import pytest
from hypothesis import seed, settings
from hypothesis.stateful import RuleBasedStateMachine


def worker_count() -> int:
    """How many pytest-xdist workers this run has (1 without xdist)."""
    return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def shard_seed(machine_name: str, shard: int) -> int:
    """The fixed seed of one shard of a derandomized run."""
    digest = hashlib.sha256(f"{machine_name}/shard{shard}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def shard_cases(machine: type, *, share: float = 1.0, shards: Optional[int] = None,
                profile: Optional[settings] = None, module: Optional[str] = None) -> Iterator[Tuple[str, type]]:
    """``(name, TestCase)`` for each shard of ``machine``: ``Test<Machine>Shard<k>``.

    ``share`` is the fraction of the current profile's ``max_examples`` the
    machine gets in total, split evenly between the shards (at least one each);
    ``shards`` defaults to :func:`worker_count`, ``profile`` to the loaded
    Hypothesis profile (the shards' settings).  Put the cases in the test
    module's globals (``module`` is their ``__module__``, for pytest's ids).
    """
    if not (isinstance(machine, type) and issubclass(machine, RuleBasedStateMachine)):
        raise TypeError(f"machine must be a RuleBasedStateMachine subclass, got {machine!r}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    count = worker_count() if shards is None else shards
    if count < 1:
        raise ValueError(f"shards must be >= 1, got {count!r}")
    profile = settings() if profile is None else profile
    per_shard = settings(profile, max_examples=max(1, int(profile.max_examples * share) // count))
    for shard in range(count):
        # Same __name__/__qualname__ as the machine: one database key for all shards (see above).
        namespace = {"__qualname__": machine.__qualname__, "__module__": machine.__module__}
        if "__firstlineno__" in vars(machine):  # Python 3.13+ finds a class's source by it
            namespace["__firstlineno__"] = vars(machine)["__firstlineno__"]
        sub = type(machine.__name__, (machine,), namespace)
        if profile.derandomize:
            sub = seed(shard_seed(machine.__qualname__, shard))(sub)
        name = f"Test{machine.__name__}Shard{shard}"
        case = type(name, (sub.TestCase,), {"settings": per_shard, "__module__": module or machine.__module__})
        yield name, case


def raft_machine_tests(machine: type, shards: Optional[int] = None, *, share: float = 1.0,
                       marks: Sequence[Any] = (), namespace: Optional[Dict[str, Any]] = None) -> Dict[str, type]:
    """Put the shard test cases of ``machine`` (:func:`shard_cases`) into the calling module's globals
    (or ``namespace``) and return them by name.

    Each case is marked with the machine's ``network`` (``fifo`` or ``unreliable``), so the plugin's
    ``--raft-network`` selects it, and with ``marks`` (e.g. ``[pytest.mark.slow]``).
    """
    if namespace is None:
        namespace = sys._getframe(1).f_globals
    marks = list(marks)
    network = getattr(machine, "network", None)
    if network in ("fifo", "unreliable"):
        marks.append(getattr(pytest.mark, network))
    cases = {}
    for name, case in shard_cases(machine, share=share, shards=shards, module=namespace.get("__name__")):
        for mark in marks:
            case = mark(case)
        cases[name] = case
    namespace.update(cases)
    return cases
