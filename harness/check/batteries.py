"""Sequential models of pysyncobj's batteries, and linearizability of a history per battery object.

Each model is the specification its pysyncobj docstring gives (``ReplList``:
"an interface similar to a regular list", ``ReplQueue.put``: "True - if item
placed in queue. False - if queue is full", ...), one class per battery, for
the operations :class:`~harness.sim.cluster.Cluster` records: kind = method
name, ``value`` = the argument tuple, ``result`` = what the replicated method
returned.  A call whose method raises inside pysyncobj (``ReplSet.remove`` of
a missing item, ``ReplList.pop`` of an empty list) changes nothing and can
never complete ``ok``: its callback never fires.

Reads.  Only ``ReplCounter`` can read through the log (``add(0)`` returns the
value).  Every other read is a *local* read (``Cluster.local_read``, kinds
``local_*``): it returns the state of the replica it ran on, which may lag.
:func:`check_battery` judges a local read as if invoked when that replica's
state could first have been current: at the latest invocation of an
operation on the object at or before the last log entry the replica had
applied.  A stale answer is then accepted; an answer that matches no state
the object was in is not.

Nondeterminism.  ``ReplSet.pop`` removes an arbitrary element, and an
operation of unknown outcome may or may not have happened, so a model's
state for the search is the frozenset of concrete states the object may be in.
"""
from __future__ import annotations

import bisect
import dataclasses
from typing import Any, Dict, Hashable, Iterable, Iterator, List, Mapping, Optional

from harness.check.linearizability import LinearizabilityResult, Model, check_linearizable
from harness.history import LOCAL_PREFIX, OK, Operation


class BatteryModel(Model):
    """A battery's sequential specification over sets of possible states (see the module docstring).

    Subclasses give :meth:`start` (the concrete initial state) and
    :meth:`successors`: the concrete states the object can be in after
    ``op`` from ``state``, given the result ``op`` returned if it was ok.
    """

    def start(self) -> Hashable:
        raise NotImplementedError

    def successors(self, state: Any, op: Operation) -> Iterator[Hashable]:
        raise NotImplementedError

    def initial(self) -> Hashable:
        return frozenset([self.start()])

    def step(self, state, op: Operation):
        after = frozenset(s for concrete in state for s in self.successors(concrete, op))
        return bool(after), after

    def unknown(self, op: Operation) -> ValueError:
        return ValueError(f"operation {op.id}: {type(self).__name__} has no operation {op.kind!r}")


def _gives(op: Operation, result: Any, state: Hashable) -> Iterator[Hashable]:
    """``state``, if ``op`` may have returned ``result``: it did, or its outcome is not known."""
    if op.outcome != OK or op.result == result:
        yield state


def _raises(op: Operation, state: Hashable) -> Iterator[Hashable]:
    """A call that raises inside pysyncobj: no effect, and it cannot have completed ok."""
    if op.outcome != OK:
        yield state


class CounterModel(BatteryModel):
    """``ReplCounter``: ``set``/``add``/``sub``/``inc`` return the new value; ``local_get``."""

    def start(self) -> int:
        return 0

    def successors(self, state: int, op: Operation) -> Iterator[int]:
        args = op.value
        if op.kind == "set":
            return _gives(op, args[0], args[0])
        if op.kind == "add":
            return _gives(op, state + args[0], state + args[0])
        if op.kind == "sub":
            return _gives(op, state - args[0], state - args[0])
        if op.kind == "inc":
            return _gives(op, state + 1, state + 1)
        if op.kind == "local_get":
            return _gives(op, state, state)
        raise self.unknown(op)


_MISSING = object()


class DictModel(BatteryModel):
    """``ReplDict``, state a frozenset of items: replicated ``set``, ``__setitem__``, ``setdefault``,
    ``update``, ``pop``, ``clear``, ``reset``; local ``get``, ``getitem``, ``len``, ``contains``, ``rawData``."""

    def start(self) -> frozenset:
        return frozenset()

    def successors(self, state: frozenset, op: Operation) -> Iterator[frozenset]:
        d, args, kind = dict(state), op.value, op.kind
        if kind in ("set", "__setitem__"):
            d[args[0]] = args[1]
            return _gives(op, None, frozenset(d.items()))
        if kind == "setdefault":
            value = d.setdefault(args[0], args[1])
            return _gives(op, value, frozenset(d.items()))
        if kind == "update":
            d.update(args[0])
            return _gives(op, None, frozenset(d.items()))
        if kind == "pop":
            value = d.pop(args[0], args[1] if len(args) > 1 else None)
            return _gives(op, value, frozenset(d.items()))
        if kind == "clear":
            return _gives(op, None, frozenset())
        if kind == "reset":
            return _gives(op, None, frozenset(args[0].items()))
        if kind == "local_get":
            return _gives(op, d.get(args[0], args[1] if len(args) > 1 else None), state)
        if kind == "local_getitem":
            return _gives(op, d[args[0]], state) if args[0] in d else _raises(op, state)
        if kind == "local_len":
            return _gives(op, len(d), state)
        if kind == "local_contains":
            return _gives(op, args[0] in d, state)
        if kind == "local_rawData":
            return _gives(op, d, state)
        raise self.unknown(op)


class ListModel(BatteryModel):
    """``ReplList``, state a tuple: replicated ``reset``, ``set``, ``append``, ``extend``, ``insert``,
    ``remove``, ``pop`` (default: the last item, as documented), ``sort``; local ``get``, ``getitem``,
    ``len``, ``count``, ``index``, ``rawData``."""

    def start(self) -> tuple:
        return ()

    def successors(self, state: tuple, op: Operation) -> Iterator[tuple]:
        items, args, kind = list(state), op.value, op.kind
        in_range = bool(args) and isinstance(args[0], int) and -len(items) <= args[0] < len(items)
        if kind == "reset":
            return _gives(op, None, tuple(args[0]))
        if kind == "set":
            if not in_range:
                return _raises(op, state)
            items[args[0]] = args[1]
            return _gives(op, None, tuple(items))
        if kind in ("append", "extend", "insert"):
            getattr(items, kind)(*args)
            return _gives(op, None, tuple(items))
        if kind == "remove":
            if args[0] not in items:
                return _raises(op, state)
            items.remove(args[0])
            return _gives(op, None, tuple(items))
        if kind == "pop":
            position = args[0] if args and args[0] is not None else -1
            if not -len(items) <= position < len(items):
                return _raises(op, state)
            value = items.pop(position)
            return _gives(op, value, tuple(items))
        if kind == "sort":
            return _gives(op, None, tuple(sorted(items, reverse=bool(args and args[0]))))
        if kind in ("local_get", "local_getitem"):
            return _gives(op, items[args[0]], state) if in_range else _raises(op, state)
        if kind == "local_len":
            return _gives(op, len(items), state)
        if kind == "local_count":
            return _gives(op, items.count(args[0]), state)
        if kind == "local_index":
            return _gives(op, items.index(args[0]), state) if args[0] in items else _raises(op, state)
        if kind == "local_rawData":
            return _gives(op, items, state)
        raise self.unknown(op)


class SetModel(BatteryModel):
    """``ReplSet``, state a frozenset: replicated ``reset``, ``add``, ``remove``, ``discard``, ``pop``
    (an arbitrary element), ``clear``, ``update``; local ``len``, ``contains``, ``rawData``."""

    def start(self) -> frozenset:
        return frozenset()

    def successors(self, state: frozenset, op: Operation) -> Iterator[frozenset]:
        args, kind = op.value, op.kind
        if kind == "reset":
            return _gives(op, None, frozenset(args[0]))
        if kind == "add":
            return _gives(op, None, state | {args[0]})
        if kind == "remove":
            return _gives(op, None, state - {args[0]}) if args[0] in state else _raises(op, state)
        if kind == "discard":
            return _gives(op, None, state - {args[0]})
        if kind == "pop":
            if not state:
                return _raises(op, state)
            if op.outcome == OK:
                return iter([state - {op.result}] if op.result in state else [])
            return iter([state - {x} for x in state])
        if kind == "clear":
            return _gives(op, None, frozenset())
        if kind == "update":
            return _gives(op, None, state | frozenset(args[0]))
        if kind == "local_len":
            return _gives(op, len(state), state)
        if kind == "local_contains":
            return _gives(op, args[0] in state, state)
        if kind == "local_rawData":
            return _gives(op, set(state), state)
        raise self.unknown(op)


class _BoundedQueueModel(BatteryModel):
    """What ``ReplQueue`` and ``ReplPriorityQueue`` share: ``put`` returns False when full (``maxsize`` > 0
    items), ``get(default=None)`` returns ``default`` when empty; local ``qsize``, ``len``, ``empty``, ``full``."""

    def __init__(self, maxsize: int = 0) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0, got {maxsize!r}")
        self.maxsize = maxsize

    def start(self) -> tuple:
        return ()

    def _put(self, items: tuple, item: Any) -> tuple:
        """``items`` (in the order ``get`` takes them) with ``item`` added."""
        raise NotImplementedError

    def successors(self, state: tuple, op: Operation) -> Iterator[tuple]:
        args, kind = op.value, op.kind
        full = self.maxsize > 0 and len(state) >= self.maxsize
        if kind == "put":
            return _gives(op, False, state) if full else _gives(op, True, self._put(state, args[0]))
        if kind == "get":
            if not state:
                return _gives(op, args[0] if args else None, state)
            return _gives(op, state[0], state[1:])
        if kind in ("local_qsize", "local_len"):
            return _gives(op, len(state), state)
        if kind == "local_empty":
            return _gives(op, not state, state)
        if kind == "local_full":
            return _gives(op, full, state)
        raise self.unknown(op)


class QueueModel(_BoundedQueueModel):
    """``ReplQueue``: first in, first out."""

    def _put(self, items: tuple, item: Any) -> tuple:
        return items + (item,)


class PriorityQueueModel(_BoundedQueueModel):
    """``ReplPriorityQueue``: ``get`` returns the smallest item (the state is kept sorted)."""

    def _put(self, items: tuple, item: Any) -> tuple:
        merged = list(items)
        bisect.insort(merged, item)
        return tuple(merged)


#: The model class of each battery that is a plain state machine (ReplLockManager: harness.check.locks).
MODELS: Dict[str, type] = {"ReplCounter": CounterModel, "ReplDict": DictModel, "ReplList": ListModel,
                           "ReplSet": SetModel, "ReplQueue": QueueModel, "ReplPriorityQueue": PriorityQueueModel}


def is_local(op: Operation) -> bool:
    return op.kind.startswith(LOCAL_PREFIX)


def _widen_local_reads(ops: List[Operation]) -> List[Operation]:
    """Each local read with its invocation moved back to the latest invocation of an ok operation at or
    before the log entry its replica had applied (``index``); 0 when none is known."""
    known = sorted((op.index, op.invoke) for op in ops
                   if not is_local(op) and op.outcome == OK and op.index is not None)
    indexes = [i for i, _ in known]
    latest: List[float] = []
    for _, invoke in known:
        latest.append(max(invoke, latest[-1]) if latest else invoke)
    widened = []
    for op in ops:
        if is_local(op) and op.outcome == OK:
            at = bisect.bisect_right(indexes, op.index if op.index is not None else -1)
            op = dataclasses.replace(op, invoke=min(latest[at - 1], op.invoke) if at else 0.0)
        widened.append(op)
    return widened


def check_battery(history: Iterable[Operation], models: Mapping[Any, Model],
                  max_states: int = 1_000_000) -> LinearizabilityResult:
    """Check that the operations on each key of ``models`` are linearizable under that key's model.

    A key is one battery object (the battery machines use the consumer's
    name); operations on other keys are ignored.  Local reads are judged
    staleness-tolerantly (see the module docstring).
    """
    by_key: Dict[Any, List[Operation]] = {key: [] for key in models}
    for op in history:
        if op.key in by_key:
            by_key[op.key].append(op)
    total = 0
    for key in sorted(by_key, key=repr):
        ops = _widen_local_reads(by_key[key])
        total += len(ops)
        result = check_linearizable(ops, model=models[key], max_states=max_states)
        if not result.ok:
            note = ("\nLocal reads (kind local_*) are shown invoked at the earliest moment the replica's "
                    "state could have been current." if any(map(is_local, ops)) else "")
            return dataclasses.replace(result, explanation=result.explanation + note)
    return LinearizabilityResult(True, None, (), f"linearizable: {len(by_key)} object(s), {total} operation(s)")


def model_for(battery: str, maxsize: Optional[int] = None) -> BatteryModel:
    """A fresh model of ``battery`` (a class name in :data:`MODELS`); ``maxsize`` for the queues."""
    if battery not in MODELS:
        raise ValueError(f"battery must be one of {sorted(MODELS)}, got {battery!r}")
    cls = MODELS[battery]
    if maxsize is not None:
        if not issubclass(cls, _BoundedQueueModel):
            raise ValueError(f"maxsize applies to ReplQueue and ReplPriorityQueue only, not {battery}")
        return cls(maxsize)
    return cls()
