"""Nodes built as pysyncobj's batteries are meant to be used: a plain ``SyncObj`` with ``consumers=[...]``.

:class:`~harness.sim.cluster.Cluster` takes ``consumers=factory``, a callable
that gets a node id and returns that node's consumers, either as a mapping
``{name: consumer}`` or as a sequence (each named by its class, e.g.
``"ReplCounter"``).  The factory runs once per node incarnation (a restarted
node gets fresh objects, as a restarted process would), the names must be
the same every time, and clients address a consumer by name
(``cluster.call("add", "counter", 1, consumer="counter")``).  This module
keeps the per-node objects, validates the factory's answers, and records
every lock-table change of a ``ReplLockManager`` (:mod:`harness.check.locks`);
:mod:`harness.adapter.batteries` makes the batteries deterministic.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, MappingView, Sequence
from typing import Any, Callable, Dict, List, Optional, Tuple

from harness.adapter import batteries as adapter
from harness.adapter import observe as compat
from harness.check.locks import LockTransition

ConsumerFactory = Callable[[str], Any]


def local_kind(method: str) -> str:
    """History kind of a local (not replicated) read: ``local_get``, ``local_len`` for ``__len__``."""
    return "local_" + method.strip("_")


class Consumers:
    """The consumers of every node of one cluster, by node id and name."""

    def __init__(self, factory: ConsumerFactory) -> None:
        if not callable(factory):
            raise TypeError(f"consumers must be a callable taking a node id and returning a mapping "
                            f"{{name: consumer}} or a list of SyncObjConsumer objects, got {factory!r}")
        self._factory = factory
        self._names: Optional[Tuple[str, ...]] = None
        self._prototypes: Dict[str, Any] = {}  # first object built under each name: what calls it takes
        self._live: Dict[str, Dict[str, Any]] = {}  # node id -> name -> consumer of its latest incarnation
        #: Every change a committed lock command made to a ReplLockManager's table, on every replica, in order.
        self.lock_transitions: List[LockTransition] = []

    @property
    def names(self) -> Tuple[str, ...]:
        return self._names or ()

    def build(self, node_id: str) -> Tuple[List[Any], List[adapter.CooperativeThread]]:
        """Call the factory for a new incarnation of ``node_id``: its consumers, in order, and the
        background threads their constructors started (the cluster drives those)."""
        with adapter.started_threads() as threads:
            made = self._factory(node_id)
        named = self._named(made)
        if self._names is None:
            self._names = tuple(named)
            self._prototypes = dict(named)
        elif tuple(named) != self._names:
            raise ValueError(f"consumers factory returned names {list(named)} for {node_id}, "
                             f"but {list(self._names)} before; every node needs the same consumers")
        self._live[node_id] = named
        return list(named.values()), list(threads)

    def _named(self, made: Any) -> Dict[str, Any]:
        if isinstance(made, Mapping):
            pairs = list(made.items())
        elif isinstance(made, Sequence) and not isinstance(made, str):
            pairs = [(type(obj).__name__, obj) for obj in made]
        else:
            raise TypeError(f"consumers factory must return a mapping {{name: consumer}} or a list of "
                            f"consumers, got {made!r}")
        named: Dict[str, Any] = {}
        for name, obj in pairs:
            if not isinstance(name, str) or not name:
                raise TypeError(f"consumer names must be non-empty strings, got {name!r}")
            if name in named:
                raise ValueError(f"two consumers named {name!r}; return a mapping {{name: consumer}} to name them")
            if not adapter.is_consumer(obj):
                raise TypeError(f"consumer {name!r} must be a pysyncobj SyncObjConsumer (e.g. a battery: "
                                f"{', '.join(adapter.BATTERIES)}), got {obj!r}")
            adapter.check_deterministic(obj, name)
            named[name] = obj
        if not named:
            raise ValueError("consumers factory returned no consumers")
        return named

    def attach(self, node_id: str, incarnation: int, node, now: Callable[[], float]) -> None:
        """Start recording the lock commands ``node`` (just built with this incarnation's consumers) applies."""
        for obj in self._live[node_id].values():
            if isinstance(obj, adapter.BATTERIES["ReplLockManager"]):
                def observed(command, client, stamp, lock, before, after) -> None:
                    self.lock_transitions.append(LockTransition(
                        node_id, incarnation, now(), compat.applying_index(node), command, client, stamp,
                        lock, before, after))

                adapter.watch_lock_commands(node, obj, observed)

    def get(self, node_id: str, name: str) -> Any:
        """The consumer ``name`` of ``node_id``'s latest incarnation."""
        self.check_name(name)
        return self._live[node_id][name]

    def check_name(self, name: str) -> None:
        if name not in self._prototypes:
            raise ValueError(f"consumer must be one of {list(self.names)}, got {name!r}")

    def check_call(self, name: str, method: str) -> None:
        """ValueError unless ``method`` of consumer ``name`` proposes through the log and takes a callback."""
        self.check_name(name)
        allowed = adapter.client_methods(self._prototypes[name])
        if method not in allowed:
            raise ValueError(f"method must be one of {allowed} (the calls of consumer {name!r} that go through "
                             f"the log), got {method!r}")

    def check_local(self, name: str, method: str) -> None:
        """ValueError unless ``method`` of consumer ``name`` is a local (not replicated) method."""
        self.check_name(name)
        proto = self._prototypes[name]
        if method in adapter.client_methods(proto) or not callable(getattr(proto, method, None)) \
                or (method.startswith("_") and not (method.startswith("__") and method.endswith("__"))):
            raise ValueError(f"method must be a local (not replicated) method of consumer {name!r}, such as "
                             f"get, __len__ or isAcquired; got {method!r}")

    def read(self, node_id: str, name: str, method: str, args: tuple) -> Any:
        """Call local ``method`` on ``node_id``'s replica; a deep copy of the answer (views become lists)."""
        result = getattr(self.get(node_id, name), method)(*args)
        return copy.deepcopy(list(result) if isinstance(result, MappingView) else result)
