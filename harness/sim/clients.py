"""Client operations of a simulated cluster: proposals through the log, their outcomes, local calls.

Every operation is recorded in the cluster's :class:`~harness.history.History` with invoke and
complete virtual times and its outcome as pysyncobj's callback reported it (``settle`` in
:mod:`harness.contract`).  A node's consumers (pysyncobj's batteries) are reached by name; their
background threads run as events on virtual time (``_drive``).  A mixin of
:class:`harness.sim.cluster.Cluster`, which owns the slots, the clock and the event queue.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

from harness.adapter import batteries as _batteries
from harness.history import FAILED, OK, PENDING, READ, UNKNOWN, WRITE, Operation
from harness.sim.consumers import Consumers, local_kind

__all__ = ["ClientApi"]


class ClientApi:
    """Proposing commands, reading through the log, and calling consumers (mixed into Cluster)."""

    def call(self, method: str, key: Any, *args: Any, via: Optional[str] = None,
             consumer: Optional[str] = None) -> Operation:
        """Propose ``method(key, *args)`` of the replicated object through ``via`` (default: the leader).

        Any ``@replicated`` method of ``node_class`` works; the operation is
        recorded with ``kind=method`` and ``value`` the argument (a tuple for
        several), and its return value lands on ``result``.  Returns at once.

        With ``consumer=name`` it proposes ``method(*args)`` of that consumer
        instead (a ``@replicated`` method, or ``ReplLockManager.tryAcquire`` /
        ``release``); ``key`` is only the history key the operation is filed
        under (one per object, for a per-object check) and ``value`` is ``args``.
        """
        if consumer is not None:
            return self._invoke(method, method, key, args, tuple(args), via, consumer)
        value = args[0] if len(args) == 1 else (tuple(args) or None)
        return self._invoke(method, method, key, args, value, via)

    def _consumer_set(self) -> Consumers:
        if self.consumers is None:
            raise ValueError("consumer given, but this Cluster was built without consumers=")
        return self.consumers

    def _invoke(self, kind: str, method_name: str, key: Any, args: tuple, value: Any,
                via: Optional[str], consumer: Optional[str] = None) -> Operation:
        via = self._client_target(via)
        slot = self._slots[via]
        if consumer is not None:
            self._consumer_set().check_call(consumer, method_name)
        op = self.history.invoke(kind, key, value, via, self.now)
        obj = slot.obj
        if obj is None:
            self._finish(op, FAILED, "NODE_DOWN")
            return op
        method = getattr(obj if consumer is None else self.consumers.get(via, consumer), method_name, None)
        if consumer is None and (method is None or not getattr(method, "replicated", False)):
            raise ValueError(f"method must be a @replicated method of {type(obj).__name__}, got {method_name!r}")

        def on_result(result: Any, error: int) -> None:
            self._settle(op, obj, result, error, self._finish)

        call_args = args if consumer is not None else (key,) + tuple(args)
        with self._active():
            self._run_on(via, f"client {method_name}", lambda: method(*call_args, callback=on_result))
        return op

    def local_call(self, method: str, key: Any, *args: Any, via: Optional[str] = None, consumer: str) -> Operation:
        """Call local (not replicated) ``method(*args)`` of ``consumer`` on ``via``'s replica, now.

        Not a read through the log: a lagging or cut-off node answers from its
        stale state.  Recorded at once, flagged by its kind ``local_<method>``
        (``local_get``, ``local_len``), with ``value`` the args, ``result`` a
        copy of the answer and ``index`` the last log entry ``via`` had applied.
        """
        via = self._client_target(via)
        self._consumer_set().check_local(consumer, method)
        op = self.history.invoke(local_kind(method), key, tuple(args), via, self.now)
        obj = self._slots[via].obj
        if obj is None:
            self._finish(op, FAILED, "NODE_DOWN")
            return op
        try:
            with self._active():  # e.g. ReplLockManager.isAcquired reads the clock
                op.result = self.consumers.read(via, consumer, method, args)
        except Exception as e:
            self._finish(op, FAILED, type(e).__name__)
            raise
        op.index = obj.raftLastApplied
        self._finish(op, OK, None)
        return op

    def consumer(self, node_id: str, name: str):
        """Consumer ``name`` of ``node_id``'s live incarnation (None while crashed); for reading, not steering."""
        slot = self._slot(node_id)
        return None if slot.obj is None else self._consumer_set().get(node_id, name)

    def _finish(self, op: Operation, outcome: str, reason: Optional[str]) -> None:
        self.history.finish(op, outcome, reason, self.now)

    def _abandon_operations(self, node_id: str, reason: str) -> None:
        """``node_id`` stopped (crashed, or removed and shut down): its waiting clients will never hear,
        and what they asked may or may not take effect."""
        for op in self.history.pending():
            if op.via == node_id:
                self._finish(op, UNKNOWN, reason)

    def put(self, key: Any, value: Any, via: Optional[str] = None) -> Operation:
        """Propose a write through ``via`` (default: the leader); returns its history entry at once."""
        return self._invoke(WRITE, "set", key, (value,), value, via)

    def get(self, key: Any, via: Optional[str] = None) -> Operation:
        """Propose a read through the log (linearizable); the value lands on the operation."""
        return self._invoke(READ, "get", key, (), None, via)

    def _must(self, propose: Callable[[str], Operation], what: str, timeout: float,
              attempt_timeout: float = 5.0) -> Operation:
        """Propose through the current leader until one attempt commits.

        An attempt can stall for good (a deposed leader appended it at an
        index the new leader never reaches, so pysyncobj never calls back), so
        each one gets ``attempt_timeout`` before the next is made.
        """
        deadline = self.now + timeout
        last = None
        while self.now < deadline:
            if self.leader() is None and not self.run_until(lambda: self.leader() is not None, deadline - self.now):
                break
            attempt = last = propose(self.leader())
            self.run_until(lambda: attempt.outcome != PENDING, min(attempt_timeout, deadline - self.now))
            if attempt.outcome == OK:
                return attempt
            self.run_for(min(self.tick_interval, max(deadline - self.now, 0)))
        raise AssertionError(f"{what} did not commit within {timeout} virtual seconds; last attempt: {last}")

    def must_put(self, key: Any, value: Any, timeout: float = 30.0) -> Operation:
        """Write through the leader, retrying until committed; AssertionError after ``timeout``."""
        return self._must(lambda via: self.put(key, value, via), f"write {key!r}", timeout)

    def must_get(self, key: Any, timeout: float = 30.0) -> Any:
        """Linearizable read through the leader, retrying until it commits."""
        return self._must(lambda via: self.get(key, via), f"read {key!r}", timeout).value

    def must_call(self, method: str, key: Any, *args: Any, timeout: float = 30.0,
                  consumer: Optional[str] = None) -> Operation:
        """:meth:`call` through the leader, retrying until one attempt commits."""
        return self._must(lambda via: self.call(method, key, *args, via=via, consumer=consumer),
                          f"{method} {key!r}", timeout)

    # --- faults ----------------------------------------------------------------------------
    def _drive(self, slot: Any, incarnation: int, thread: _batteries.CooperativeThread) -> None:
        """One turn of a consumer's background thread, on virtual time (see harness.adapter.batteries)."""
        if slot.obj is None or slot.incarnation != incarnation:
            return  # the process it ran in is gone
        wake: List[Optional[float]] = []
        self._run_on(slot.id, "consumer thread", lambda: wake.append(thread.step()))
        if wake and wake[0] is not None:
            self._events.at(self._clock.now() + wake[0], self._drive, slot, incarnation, thread)
