"""A property harness that finds bugs in Raft clusters built on pysyncobj.

Real pysyncobj nodes run in one process, in virtual time, over a simulated
network whose every message passes chains of small filters; Hypothesis state
machines in ``properties/`` drive them and check Raft's safety after every step.
"""
from harness.contract import NETWORK_MODELS, NodeError
from harness.sim.cluster import Cluster, MembershipChange
from harness.adapter.observe import VERSION as PYSYNCOBJ_VERSION
from harness.wire.filters import (ConditionalFilter, CountFilter, DelayFilter, DropPacketFilter, DuplicateFilter, Filter,
                      FilterContext, FilterFactory, HoldFilter, IsolationFilter, IsolationFilterFactory,
                      MessageTypeFilter, PartitionFilter, PartitionFilterFactory, PredicateFilter,
                      ReorderFilter)
from harness.history import History, Operation
from harness.check.invariants import LivenessViolation, SafetyChecker, SafetyViolation, Violation
from harness.kv import KVStore
from harness.check.linearizability import LinearizabilityResult, check_linearizable
from harness.wire.messages import MESSAGE_TYPES, Envelope
from harness.state import Entry, NodeState
from harness.util import alloc_port, eventually, retry, temp_dir

__all__ = [
    "Cluster", "MembershipChange", "NodeError", "PYSYNCOBJ_VERSION", "KVStore",
    "Filter", "FilterContext", "FilterFactory", "ConditionalFilter", "CountFilter", "DelayFilter",
    "DropPacketFilter", "DuplicateFilter", "HoldFilter", "IsolationFilter", "IsolationFilterFactory",
    "MessageTypeFilter", "PartitionFilter", "PartitionFilterFactory", "PredicateFilter", "ReorderFilter",
    "Envelope", "MESSAGE_TYPES", "NETWORK_MODELS", "Entry", "NodeState",
    "History", "Operation", "LinearizabilityResult", "check_linearizable",
    "SafetyChecker", "SafetyViolation", "LivenessViolation", "Violation",
    "alloc_port", "eventually", "retry", "temp_dir",
]
