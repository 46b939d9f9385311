"""Client operations as a linearizability checker needs them.

Every client call through the cluster becomes one :class:`Operation` with the
virtual time it was invoked and the virtual time its outcome became known.
An operation whose outcome is unknown (the proposer crashed, the leader
changed, the run ended first) may have taken effect at any point after its
invocation, or never; the checker must allow both.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, List, Optional, Tuple

OK = "ok"
FAILED = "failed"
UNKNOWN = "unknown"
PENDING = "pending"

WRITE = "write"
READ = "read"
#: A read a node answers from its own state, outside the log: not linearizable by design, judged by
#: :mod:`harness.check.local_reads` (a value that was written, never older than one it returned before).
LOCAL_READ = "local_read"
#: Every kind of read served outside the log starts so: LOCAL_READ, and a battery's ``local_get``...
LOCAL_PREFIX = "local_"


@dataclasses.dataclass
class Operation:
    """One client operation on a key: a write of ``value`` or a read returning ``value``."""

    id: int
    kind: str  # WRITE, READ or LOCAL_READ (``index``: what ``via`` had applied when it answered)
    key: str
    value: Any  # the value written (the argument, for other operations), or the value a read returned
    via: str  # node the client sent the request to
    invoke: float  # virtual time of the call
    complete: Optional[float] = None  # virtual time the outcome became known
    outcome: str = PENDING  # OK, FAILED, UNKNOWN or PENDING (still in flight)
    reason: Optional[str] = None  # pysyncobj FAIL_REASON name for failed/unknown
    result: Any = None  # what the replicated method returned (OK operations)
    index: Optional[int] = None  # log index the write was applied at (OK writes)
    term: Optional[int] = None  # term of that log entry
    incarnation: Optional[int] = None  # of ``via``, for a local read (its promises hold per incarnation)

    @property
    def done(self) -> bool:
        return self.outcome in (OK, FAILED)

    def __str__(self) -> str:
        what = f"{self.kind}({self.key!r}, {self.value!r})"
        end = "…" if self.complete is None else f"{self.complete:.3f}"
        why = f" {self.reason}" if self.reason else ""
        # What a battery call returned, and where the log put it: a linearizability explanation needs both.
        returned = f" -> {self.result!r}" if self.result is not None and self.kind not in (WRITE, READ) else ""
        at = f" at {self.index}" if self.index is not None else ""
        return f"#{self.id} {what} via {self.via} [{self.invoke:.3f}, {end}] {self.outcome}{why}{returned}{at}"


class History:
    """An append-only list of operations in invocation order."""

    def __init__(self) -> None:
        self._ops: List[Operation] = []
        self._completions: List[Operation] = []  # in the order outcomes became known

    def finish(self, op: Operation, outcome: str, reason: Optional[str], at: float) -> None:
        """Record an outcome; an unknown outcome keeps no completion time (it may still take effect)."""
        if op.outcome != PENDING:
            return
        op.outcome, op.reason = outcome, reason
        if outcome != UNKNOWN:
            op.complete = at
        self._completions.append(op)

    def completed_since(self, cursor: int) -> Tuple[List[Operation], int]:
        """Operations whose outcome became known after ``cursor``, and the new cursor."""
        return self._completions[cursor:], len(self._completions)

    def invoke(self, kind: str, key: str, value: Any, via: str, at: float) -> Operation:
        op = Operation(id=len(self._ops), kind=kind, key=key, value=value, via=via, invoke=at)
        self._ops.append(op)
        return op

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._ops)

    def __len__(self) -> int:
        return len(self._ops)

    def __getitem__(self, i: int) -> Operation:
        return self._ops[i]

    def pending(self) -> List[Operation]:
        return [op for op in self._ops if op.outcome == PENDING]
