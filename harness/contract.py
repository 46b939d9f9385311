"""The backend contract: what a cluster offers the rest of the harness, whichever backend runs it.

Two backends run real pysyncobj nodes: :class:`harness.sim.cluster.Cluster`
(one process, virtual time, a simulated network: deterministic) and
:class:`harness.tcp.TcpCluster` (pysyncobj's own TCP transport on loopback,
wall-clock time).  Checkers, reports, utilities and state machines should not
care which one they drive, as TiKV's ``Cluster<T: Simulator>`` runs the same
tests over its node and server simulators.  This module is that contract, in
two halves:

:class:`ClusterLike`
    The typed protocol: every member both backends offer.  Code that takes
    "a cluster" is typed against it, not against a concrete class.
    :class:`RecordingCluster` adds what only the simulation can offer
    (a log and a digest of every delivered message).
:class:`ClusterBase`
    The code both backends share, held once: argument checks, the choice of
    the node a client request goes through, partitions and isolation, the
    settling of a client callback, the seeding of the network's randomness.

:class:`NodeError` (an exception inside a node), ``NETWORK_MODELS`` and
``MAX_NODES`` live here because both backends use them.
"""
from __future__ import annotations

import abc
import dataclasses
import random
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Tuple, TypeVar,
                    runtime_checkable)

from pysyncobj import FAIL_REASON, SyncObjConf

from harness.adapter import observe as compat
from harness.history import FAILED, OK, PENDING, READ, UNKNOWN, History, Operation
from harness.state import NodeState, crashed_state
from harness.util import check_seconds
from harness.wire.filters import Filter, FilterFactory, IsolationFilterFactory, PartitionFilterFactory
from harness.wire.messages import Envelope

__all__ = ["ClusterLike", "RecordingCluster", "ClusterBase", "NodeError", "NETWORK_MODELS", "MAX_NODES"]

#: The channel models every backend offers (see :mod:`harness.sim.network` and :mod:`harness.tcp.network`).
NETWORK_MODELS = ("fifo", "unreliable")
#: The largest cluster either backend starts.
MAX_NODES = 9

#: Outcomes after which a command may or may not have been applied.
_UNKNOWN_REASONS = {FAIL_REASON.LEADER_CHANGED, getattr(FAIL_REASON, "UNKNOWN_OUTCOME", -1)}
_CONF_KEYS = frozenset(vars(SyncObjConf()))

_C = TypeVar("_C")


@dataclasses.dataclass(frozen=True)
class NodeError:
    """An exception raised by pysyncobj code inside a node: always a finding, never swallowed."""

    node: str
    incarnation: int
    activity: str  # what the node was doing: "tick", "handling append_entries from n2", …
    time: float
    traceback: str

    def __str__(self) -> str:
        return (f"exception in node {self.node} (incarnation {self.incarnation}) while {self.activity} "
                f"at t={self.time:.6f}:\n{self.traceback}")


@runtime_checkable
class ClusterLike(Protocol):
    """What every cluster backend offers; times are virtual seconds in the simulation, wall seconds over TCP."""

    seed: int
    network_model: str
    pysyncobj_version: str
    history: History
    node_errors: List[NodeError]

    # --- lifecycle
    def close(self) -> None: ...
    def __enter__(self: _C) -> _C: ...
    def __exit__(self, *exc: Any) -> None: ...

    # --- time
    @property
    def now(self) -> float: ...
    def run_for(self, seconds: float) -> None: ...
    def run_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool: ...
    def tick(self) -> None: ...

    # --- observation
    @property
    def node_ids(self) -> List[str]: ...
    @property
    def voter_ids(self) -> List[str]: ...
    def up_ids(self) -> List[str]: ...
    def is_up(self, node_id: str) -> bool: ...
    def incarnation(self, node_id: str) -> int: ...
    def node(self, node_id: str) -> Any: ...
    def state(self, node_id: str) -> NodeState: ...
    def observe(self) -> Tuple[NodeState, ...]: ...
    def leader(self) -> Optional[str]: ...
    def wait_leader(self, timeout: float = 30.0) -> str: ...
    def connected(self, a: str, b: str) -> bool: ...
    @property
    def recent_messages(self) -> List[Tuple[float, Envelope]]: ...
    @property
    def messages_delivered(self) -> int: ...
    @property
    def stats(self) -> Dict[str, int]: ...

    # --- clients
    def put(self, key: Any, value: Any, via: Optional[str] = None) -> Operation: ...
    def get(self, key: Any, via: Optional[str] = None) -> Operation: ...
    def must_put(self, key: Any, value: Any, timeout: float = 30.0) -> Operation: ...
    def must_get(self, key: Any, timeout: float = 30.0) -> Any: ...

    # --- faults
    def crash(self, node_id: str) -> None: ...
    def restart(self, node_id: str) -> None: ...
    def force_snapshot(self, node_id: str) -> None: ...
    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None: ...
    def isolate_node(self, node_id: str) -> None: ...
    def heal(self) -> None: ...
    def add_send_filter(self, node_id: str, f: Filter) -> None: ...
    def add_recv_filter(self, node_id: str, f: Filter) -> None: ...
    def add_send_filter_factory(self, factory: FilterFactory) -> None: ...
    def clear_filters(self, node_id: str) -> None: ...
    def clear_all_filters(self) -> None: ...
    def filters(self, node_id: str) -> Tuple[List[Filter], List[Filter]]: ...


@runtime_checkable
class RecordingCluster(ClusterLike, Protocol):
    """A :class:`ClusterLike` that also logs and digests every delivered message (the simulated
    ``Cluster``; real sockets give no total order to digest): what a detailed step record needs."""

    def record_messages(self) -> None: ...
    def take_message_log(self) -> List[Dict[str, Any]]: ...
    def trace_digest(self) -> str: ...


class ClusterBase(abc.ABC):
    """The code every backend shares.  A subclass keeps its nodes in ``_slots`` (id -> an object with
    ``id``, ``voter``, ``obj`` (the live SyncObj or None) and ``incarnation``) and provides the
    abstract members below; it validates its arguments with the ``_check_*`` helpers."""

    pysyncobj_version = compat.VERSION
    #: What the backend's seconds are, for error messages: virtual (the simulation) or wall-clock ones.
    _TIME_UNIT = "virtual seconds"
    _slots: Dict[str, Any]

    # --- what a backend provides
    @abc.abstractmethod
    def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def node_ids(self) -> List[str]: ...

    @abc.abstractmethod
    def _slot(self, node_id: str, arg: str = "node_id") -> Any:
        """The slot of ``node_id``; ValueError naming ``arg`` and the valid ids if there is none."""

    @abc.abstractmethod
    def add_send_filter_factory(self, factory: FilterFactory) -> None: ...

    @abc.abstractmethod
    def clear_all_filters(self) -> None: ...

    # --- argument checks
    @staticmethod
    def _check_cluster_args(nodes: Any, seed: Any, network: Any) -> None:
        """The constructor arguments every backend takes: cluster size, seed, channel model."""
        if not isinstance(nodes, int) or isinstance(nodes, bool) or not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"nodes must be an int in [1, {MAX_NODES}], got {nodes!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if network not in NETWORK_MODELS:
            raise ValueError(f"network must be one of {list(NETWORK_MODELS)}, got {network!r}")

    @staticmethod
    def _check_pysyncobj_conf(given: Mapping[str, Any], forbidden: Mapping[str, str],
                              defaults: Mapping[str, Any]) -> Dict[str, Any]:
        """``defaults`` updated with the caller's ``SyncObjConf`` keywords ``given``, once none of them is
        one the harness sets itself (``forbidden``: key -> why), misspelt, or refused by pysyncobj."""
        for key, why in forbidden.items():
            if key in given:
                raise ValueError(f"{key} cannot be set: {why}")
        unknown = sorted(set(given) - _CONF_KEYS)
        if unknown:
            raise ValueError(f"unknown pysyncobj setting(s) {unknown}; SyncObjConf takes {sorted(_CONF_KEYS)}")
        conf = dict(defaults)
        conf.update(given)
        try:  # bad pysyncobj settings fail here, not inside a node
            SyncObjConf(**conf).validate()
        except AssertionError:
            raise ValueError(f"pysyncobj settings {sorted(given)} are rejected by "
                             f"SyncObjConf.validate() (e.g. raftMinTimeout must be < raftMaxTimeout), "
                             f"got {given!r}") from None
        return conf

    def _check_seconds(self, name: str, value: Any, positive: bool = False) -> float:
        """``value`` as a float number of this backend's seconds, >= 0 (> 0 if ``positive``)."""
        return check_seconds(name, value, unit=self._TIME_UNIT, positive=positive)

    @staticmethod
    def _network_rng(seed: int) -> random.Random:
        """The generator the network and its filters draw from: a stream of its own, apart from the nodes'."""
        return random.Random(f"network-{seed}")

    # --- lifecycle
    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- observation
    def up_ids(self) -> List[str]:
        return [i for i in self.node_ids if self._slots[i].obj is not None]

    def is_up(self, node_id: str) -> bool:
        return self._slot(node_id).obj is not None

    def incarnation(self, node_id: str) -> int:
        return self._slot(node_id).incarnation

    def leader(self) -> Optional[str]:
        """The up node in leader role with the highest term, or None."""
        best = None
        for node_id in self.up_ids():
            obj = self._slots[node_id].obj
            if compat.role(obj) == "leader" and (best is None or obj.raftCurrentTerm > best[0]):
                best = (obj.raftCurrentTerm, node_id)
        return None if best is None else best[1]

    @staticmethod
    def _observe(slot: Any, consume: bool) -> NodeState:
        if slot.obj is None:
            return crashed_state(slot.id, slot.incarnation, slot.voter)
        return compat.observe(slot.obj, slot.id, slot.incarnation, slot.voter, consume=consume)

    # --- clients
    def _client_target(self, via: Optional[str]) -> str:
        if via is None:
            via = self.leader() or next(iter(self.up_ids()), None)
            if via is None:
                raise ValueError("no node is up to take the request")
        self._slot(via, "via")
        return via

    @staticmethod
    def _failure_outcome(error: int) -> Tuple[str, str]:
        """(outcome, reason) of a pysyncobj callback that did not succeed: UNKNOWN if the command may
        still have been applied, FAILED if it surely was not."""
        return (UNKNOWN if error in _UNKNOWN_REASONS else FAILED), compat.FAIL_REASONS.get(error, str(error))

    @staticmethod
    def _settle(op: Operation, obj: Any, result: Any, error: int,
                finish: Callable[[Operation, str, Optional[str]], None]) -> None:
        """Record what pysyncobj's callback said about client operation ``op``, proposed on node ``obj``:
        its log slot and result on success; ``finish(op, outcome, reason)`` settles it in the history.
        A static method, so a callback can use it without holding the cluster."""
        if op.outcome != PENDING:
            return  # already settled, e.g. as unknown when its proposer crashed
        if error == FAIL_REASON.SUCCESS:
            op.index = compat.applying_index(obj)
            op.term = compat.entry_term(obj, op.index)
            op.result = result
            if op.kind == READ:
                op.value = result
            finish(op, OK, None)
        else:
            finish(op, *ClusterBase._failure_outcome(error))

    # --- faults
    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Cut every link between ``group_a`` and ``group_b``; other nodes still reach both."""
        group_a, group_b = list(group_a), list(group_b)
        for n in group_a:
            self._slot(n, "group_a")
        for n in group_b:
            self._slot(n, "group_b")
        self.add_send_filter_factory(PartitionFilterFactory(group_a, group_b))

    def isolate_node(self, node_id: str) -> None:
        """Cut ``node_id`` off from every other node."""
        self._slot(node_id)
        self.add_send_filter_factory(IsolationFilterFactory(node_id))

    def heal(self) -> None:
        """Remove every filter on every node: :meth:`clear_all_filters`."""
        self.clear_all_filters()
