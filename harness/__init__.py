"""A property harness that finds bugs in Raft clusters built on pysyncobj.

Real pysyncobj nodes run in one process, in virtual time, over a simulated network whose every
message passes chains of small filters; Hypothesis state machines (:class:`harness.fuzz.machine.RaftMachine`,
run from ``properties/``) drive them and check Raft's safety after every step.

The names below are the public API; everything else lives in the sub-packages by concern
(``sim`` the simulated world, ``tcp`` real sockets, ``wire`` messages and filters, ``adapter`` the only
reader of pysyncobj internals, ``check`` invariants and linearizability, ``fuzz`` machines and
campaigns, ``report`` counterexamples, ``cli`` the command line) and may change between releases.
"""
from harness.adapter.observe import VERSION as PYSYNCOBJ_VERSION
from harness.check.invariants import LivenessViolation, SafetyChecker, SafetyViolation, Violation
from harness.check.linearizability import LinearizabilityResult, check_linearizable
from harness.contract import NETWORK_MODELS, ClusterLike, NodeError
from harness.history import History, Operation
from harness.kv import KVStore
from harness.sim.cluster import Cluster, MembershipChange
from harness.state import Entry, NodeState
from harness.util import alloc_port, eventually, retry, temp_dir
from harness.wire.filters import (ConditionalFilter, CountFilter, DelayFilter, DropPacketFilter, DuplicateFilter,
                                  Filter, FilterContext, FilterFactory, HoldFilter, IsolationFilter,
                                  IsolationFilterFactory, MessageTypeFilter, PartitionFilter, PartitionFilterFactory,
                                  PredicateFilter, ReorderFilter)
from harness.wire.messages import MESSAGE_TYPES, Envelope

#: The public API, sorted (tests/test_layout.py checks it stays so).
__all__ = [
    "Cluster", "ClusterLike", "ConditionalFilter", "CountFilter", "DelayFilter", "DropPacketFilter", "DuplicateFilter",
    "Entry", "Envelope", "Filter", "FilterContext", "FilterFactory", "History", "HoldFilter",
    "IsolationFilter", "IsolationFilterFactory", "KVStore", "LinearizabilityResult", "LivenessViolation",
    "MESSAGE_TYPES", "MembershipChange", "MessageTypeFilter", "NETWORK_MODELS", "NodeError", "NodeState",
    "Operation", "PYSYNCOBJ_VERSION", "PartitionFilter", "PartitionFilterFactory", "PredicateFilter",
    "ReorderFilter", "SafetyChecker", "SafetyViolation", "Violation", "alloc_port", "check_linearizable",
    "eventually", "retry", "temp_dir",
]
