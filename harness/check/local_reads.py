"""Local reads: a node answering from its own state, outside the log, held to the promises it can keep.

pysyncobj has no read path through consensus besides a replicated method: reading a node's state
directly (``KVStore.local_get``) returns whatever it has applied, so a follower or a deposed leader
may answer with stale data.  Linearizability would cry wolf on every such read, so
:func:`harness.check.linearizability.check_linearizable` leaves them out and this model judges them.
A correct Raft node still promises, for a local read of ``key`` through node N:

* **written** — the value is one some write of ``key`` wrote (a write invoked no later than the
  read answered, and not known to have failed), or the initial ``None``;
* **not from the future** — if that write was acknowledged at log index i, N had applied i;
* **monotonic per incarnation** — N's applied index never goes back between two of its reads, and
  a key never goes back to a value whose acknowledged write is older than the one N returned
  before (an unacknowledged write has no known position, so it is never judged older or newer).

A new incarnation starts over: what a node applied before a crash is rebuilt from its files.
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, Iterable, List, Optional, Tuple

from harness.history import FAILED, LOCAL_READ, OK, WRITE, Operation

#: The position of the initial value: before every log entry.
_INITIAL = 0


class LocalReadChecker:
    """Feed it the history after every step (:meth:`check`); it returns what the new local reads broke."""

    def __init__(self) -> None:
        self._writes: Dict[Tuple[Hashable, Hashable], List[Operation]] = {}
        self._ops_seen = 0
        self._checked: set = set()  # ids of local reads already judged
        self._applied: Dict[Tuple[str, int], Operation] = {}  # (node, incarnation) -> its last read
        self._last: Dict[Tuple[str, int, Hashable], Operation] = {}  # ... and key -> its last read of it

    def check(self, history: Iterable[Operation]) -> List[str]:
        ops = list(history)
        for op in ops[self._ops_seen:]:
            if op.kind == WRITE:
                self._writes.setdefault((op.key, _hashable(op.value)), []).append(op)
        self._ops_seen = len(ops)
        reads = sorted((op for op in ops if op.kind == LOCAL_READ and op.outcome == OK and op.id not in self._checked),
                       key=lambda o: (o.complete, o.id))
        problems: List[str] = []
        for op in reads:
            self._checked.add(op.id)
            problems.extend(self._judge(op))
        return problems

    def _positions(self, op: Operation) -> Optional[List[int]]:
        """Log indexes the value ``op`` returned may come from; None if one of them is unknown."""
        found = [w for w in self._writes.get((op.key, _hashable(op.value)), ())
                 if w.outcome != FAILED and w.invoke <= op.complete]
        positions = [w.index if w.outcome == OK else None for w in found]
        if op.value is None:
            positions.append(_INITIAL)
        return None if None in positions else positions

    def _judge(self, op: Operation) -> List[str]:
        out = []
        written = op.value is None or any(w.outcome != FAILED and w.invoke <= op.complete
                                          for w in self._writes.get((op.key, _hashable(op.value)), ()))
        if not written:
            out.append(f"{op} returned a value no write of {op.key!r} wrote by then")
        positions = self._positions(op)
        if written and positions and min(positions) > op.index:
            out.append(f"{op} returned the value acknowledged at index {min(positions)}, but {op.via} "
                       f"had applied only up to {op.index}")
        node = (op.via, op.incarnation)
        before = self._applied.get(node)
        if before is not None and op.index < before.index:
            out.append(f"{op.via} (incarnation {op.incarnation}) had applied up to {before.index} when it "
                       f"answered {before}, and only up to {op.index} when it answered {op}")
        self._applied[node] = op
        previous = self._last.get(node + (op.key,))
        if previous is not None and previous.value != op.value:
            old = self._positions(previous)
            if old is not None and positions and max(positions) < min(old):
                out.append(f"{op} is older than {previous}, which {op.via} returned before in the same "
                           f"incarnation (written at index {max(positions)} < {min(old)})")
        self._last[node + (op.key,)] = op
        return out


def _hashable(value: Any) -> Hashable:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def check_local_reads(history: Iterable[Operation]) -> List[str]:
    """Every broken promise of the local reads in ``history`` (empty: all of them are fine)."""
    return LocalReadChecker().check(history)
