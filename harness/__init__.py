"""A property harness that finds bugs in Raft clusters built on pysyncobj.

Real pysyncobj nodes run in one process, in virtual time, over a simulated network whose every
message passes chains of small filters; Hypothesis state machines (:class:`harness.fuzz.machine.RaftMachine`,
run from ``properties/``) drive them and check Raft's safety after every step.

The names below are the public API; everything else lives in the sub-packages by concern
(``sim`` the simulated world, ``tcp`` real sockets, ``wire`` messages and filters, ``adapter`` the only
reader of pysyncobj internals, ``check`` invariants and linearizability, ``ledger`` known bugs and
triage, ``fuzz`` machines and campaigns, ``report`` counterexamples, ``cli`` the command line) and may
change between releases.

The names are imported on first use, not when ``harness`` is: pytest loads the harness' plugin
(:mod:`harness.fuzz.plugin`) in every project that has the package installed, and a project that never
opens a cluster should not pay for importing pysyncobj and the simulator.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:  # the same names for type checkers (the package is typed: py.typed), resolved statically
    from harness.adapter.observe import VERSION as PYSYNCOBJ_VERSION
    from harness.check.invariants import LivenessViolation, SafetyChecker, SafetyViolation, Violation
    from harness.check.linearizability import LinearizabilityResult, check_linearizable
    from harness.contract import NETWORK_MODELS, ClusterLike, NodeError
    from harness.history import History, Operation
    from harness.kv import KVStore
    from harness.sim.cluster import Cluster, MembershipChange
    from harness.state import Entry, NodeState
    from harness.util import alloc_port, eventually, retry, temp_dir
    from harness.wire.filters import (ConditionalFilter, CountFilter, DelayFilter, DropPacketFilter,
                                      DuplicateFilter, Filter, FilterContext, FilterFactory, HoldFilter,
                                      IsolationFilter, IsolationFilterFactory, MessageTypeFilter, PartitionFilter,
                                      PartitionFilterFactory, PredicateFilter, ReorderFilter)
    from harness.wire.messages import MESSAGE_TYPES, Envelope

#: Public name -> the module that defines it (``PYSYNCOBJ_VERSION`` is ``VERSION`` there).
_HOME: Dict[str, str] = {
    **dict.fromkeys(("Cluster", "MembershipChange"), "harness.sim.cluster"),
    **dict.fromkeys(("ClusterLike", "NETWORK_MODELS", "NodeError"), "harness.contract"),
    "PYSYNCOBJ_VERSION": "harness.adapter.observe",
    "KVStore": "harness.kv",
    **dict.fromkeys(("Filter", "FilterContext", "FilterFactory", "ConditionalFilter", "CountFilter", "DelayFilter",
                     "DropPacketFilter", "DuplicateFilter", "HoldFilter", "IsolationFilter", "IsolationFilterFactory",
                     "MessageTypeFilter", "PartitionFilter", "PartitionFilterFactory", "PredicateFilter",
                     "ReorderFilter"), "harness.wire.filters"),
    **dict.fromkeys(("Envelope", "MESSAGE_TYPES"), "harness.wire.messages"),
    **dict.fromkeys(("Entry", "NodeState"), "harness.state"),
    **dict.fromkeys(("History", "Operation"), "harness.history"),
    **dict.fromkeys(("LinearizabilityResult", "check_linearizable"), "harness.check.linearizability"),
    **dict.fromkeys(("SafetyChecker", "SafetyViolation", "LivenessViolation", "Violation"),
                    "harness.check.invariants"),
    **dict.fromkeys(("alloc_port", "eventually", "retry", "temp_dir"), "harness.util"),
}

#: The public API, sorted (tests/test_layout.py checks it stays so).
__all__ = [
    "Cluster", "ClusterLike", "ConditionalFilter", "CountFilter", "DelayFilter", "DropPacketFilter",
    "DuplicateFilter", "Entry", "Envelope", "Filter", "FilterContext", "FilterFactory", "History", "HoldFilter",
    "IsolationFilter", "IsolationFilterFactory", "KVStore", "LinearizabilityResult", "LivenessViolation",
    "MESSAGE_TYPES", "MembershipChange", "MessageTypeFilter", "NETWORK_MODELS", "NodeError", "NodeState",
    "Operation", "PYSYNCOBJ_VERSION", "PartitionFilter", "PartitionFilterFactory", "PredicateFilter",
    "ReorderFilter", "SafetyChecker", "SafetyViolation", "Violation", "alloc_port", "check_linearizable",
    "eventually", "retry", "temp_dir",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), "VERSION" if name == "PYSYNCOBJ_VERSION" else name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
