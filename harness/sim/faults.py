"""The faults a whole-node filter cannot express, as :class:`~harness.sim.cluster.Cluster` methods.

Every older fault acts on one node's whole send or receive side.  Real clusters also see one slow
or lossy route, one direction of one link, partitions of named shapes, a process stopped and
continued (SIGSTOP/SIGCONT), a clock running fast or slow, a leader handing over, and clients that
give up or read locally: Jepsen's nemesis vocabulary.  :class:`FaultApi` is mixed into ``Cluster``
and uses only its event queue, clocks, network and slots, so each fault is a prose-like call with
explicit arguments and a one-line ValueError for bad input::

    c.delay_link("n1", "n2", 0.5)          # n1→n2 only; n1's other links and n2→n1 untouched
    c.partition_majorities_ring()           # everyone sees a majority, no two the same one
    c.pause("n3", 4.0)                      # n3 neither ticks nor reads for 4 virtual seconds
    c.skew_clock("n2", 2.0)                 # n2's timers fire twice as early
    c.transfer_leadership("n2")             # 0.3.16+
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, List, Optional, Sequence

from pysyncobj import FAIL_REASON, SyncObj

from harness.adapter import observe as compat
from harness.history import FAILED, LOCAL_READ, OK, PENDING, UNKNOWN, Operation
from harness.sim import clock as _clock
from harness.sim.network import SimNode
from harness.wire.filters import DelayFilter, DropPacketFilter, HoldFilter, MessageTypeFilter
from harness.wire.links import LinkFilter, OneWayCut, VisibilityFilterFactory, majorities_reach, ring_visibility

#: Longest process pause :meth:`FaultApi.pause` accepts, in virtual seconds.
MAX_PAUSE = 60.0
#: Whether the installed pysyncobj can hand leadership over (``transferLeadership``, 0.3.16+).
CAN_TRANSFER_LEADERSHIP = hasattr(SyncObj, "transferLeadership")
#: The reason a client that stopped waiting records for its operation (it may still take effect).
CLIENT_TIMEOUT = "CLIENT_TIMEOUT"


@dataclasses.dataclass
class LeadershipTransfer:
    """One ``transferLeadership`` call.  ``ok`` means pysyncobj sent ``timeout_now`` (it promises no
    more); whether ``to`` then won is for the caller to watch (:meth:`Cluster.leader`)."""

    to: Optional[str]  # None: pysyncobj picks the most caught-up connected follower
    via: str  # the leader asked
    invoke: float
    complete: Optional[float] = None
    outcome: str = PENDING  # OK, FAILED
    reason: Optional[str] = None


def _positive_seconds(name: str, value: Any, most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= most:
        raise ValueError(f"{name} must be in (0, {most:g}] virtual seconds, got {value!r}")
    return float(value)


class FaultApi:
    """Per-link faults, partition shapes, pauses, clock skew, leadership transfer and client variety."""

    # --- one directed link ---------------------------------------------------------------------
    def _link(self, src: str, dst: str) -> None:
        self._slot(src, "src")
        self._slot(dst, "dst")
        if src == dst:
            raise ValueError(f"dst must be another node than src, got {dst!r} for both")

    def cut_link(self, src: str, dst: str) -> None:
        """Lose every message ``src`` sends to ``dst``; ``dst`` still reaches ``src``, and ``src`` its
        other peers.  On ``fifo`` (TCP) the connection ``src``–``dst`` is down while the cut lasts:
        see :class:`~harness.wire.links.OneWayCut`."""
        self._link(src, dst)
        self.add_send_filter(src, OneWayCut([dst]))

    def delay_link(self, src: str, dst: str, seconds: float) -> None:
        """Add ``seconds`` to every message ``src`` sends to ``dst`` (a slow path; on ``fifo`` in order)."""
        self._link(src, dst)
        self.add_send_filter(src, LinkFilter(dst, DelayFilter(seconds)))

    def drop_link(self, src: str, dst: str, rate: float) -> None:
        """Lose each message ``src`` sends to ``dst`` with probability ``rate`` (on ``fifo`` a loss resets
        the connection)."""
        self._link(src, dst)
        self.add_send_filter(src, LinkFilter(dst, DropPacketFilter(rate)))

    def hold_link(self, src: str, dst: str, types: Optional[Iterable[str]] = None) -> HoldFilter:
        """Hold what ``src`` sends to ``dst`` (only ``types``, if given; on ``fifo`` everything behind
        them too) until the returned filter's ``release()`` or a heal."""
        self._link(src, dst)
        hold = HoldFilter(types)
        self.add_send_filter(src, LinkFilter(dst, hold))
        return hold

    def block_link_type(self, src: str, dst: str, kind: str) -> None:
        """Lose the messages of type ``kind`` that ``src`` sends to ``dst``."""
        self._link(src, dst)
        self.add_send_filter(src, LinkFilter(dst, MessageTypeFilter([kind])))

    # --- partition shapes ----------------------------------------------------------------------
    def _group(self, nodes: Iterable[str], arg: str) -> List[str]:
        if isinstance(nodes, str):
            raise ValueError(f"{arg} must be a collection of node ids, got the string {nodes!r}")
        group = sorted(set(nodes))
        for n in group:
            self._slot(n, arg)
        if not group:
            raise ValueError(f"{arg} must name at least one of {self.node_ids}")
        return group

    def partition_one_way(self, senders: Iterable[str], receivers: Iterable[str]) -> None:
        """An asymmetric partition: ``receivers`` hear nothing from ``senders``, ``senders`` still hear
        ``receivers`` (on ``unreliable``; on ``fifo`` the connections between them are down, as for
        :meth:`cut_link`)."""
        senders, receivers = self._group(senders, "senders"), self._group(receivers, "receivers")
        overlap = sorted(set(senders) & set(receivers))
        if overlap:
            raise ValueError(f"senders and receivers must be disjoint, both contain {overlap}")
        for s in senders:
            self.add_send_filter(s, OneWayCut(receivers))

    def partition_majority(self, minority: Iterable[str]) -> None:
        """Jepsen's majority/minority split: ``minority`` (fewer than half the nodes) against the rest."""
        minority = self._group(minority, "minority")
        everyone = self.node_ids
        if not 2 * len(minority) < len(everyone):
            raise ValueError(f"minority must hold fewer than half of the {len(everyone)} nodes, got {minority}")
        self.partition(minority, [n for n in everyone if n not in minority])

    def _ring(self, order: Optional[Sequence[str]]) -> List[str]:
        if order is None:
            order = self.node_ids
        if isinstance(order, str):
            raise ValueError(f"order must be a sequence of node ids, got the string {order!r}")
        order = list(order)
        for n in order:
            self._slot(n, "order")
        if len(set(order)) != len(order):
            raise ValueError(f"order must name each node at most once, got {order}")
        if len(order) < 4:
            raise ValueError(f"order must name at least 4 nodes (in a ring of 3 everyone is a neighbour), got {order}")
        return order

    def partition_ring(self, order: Optional[Sequence[str]] = None) -> None:
        """Each node of the ring ``order`` (default: every node, sorted) sees only its two neighbours."""
        order = self._ring(order)
        self.add_send_filter_factory(VisibilityFilterFactory(ring_visibility(order, 1)))

    def partition_majorities_ring(self, order: Optional[Sequence[str]] = None) -> None:
        """Jepsen's majorities ring: every node of ``order`` sees a majority (its nearest ring
        neighbours), and no two nodes see the same majority."""
        order = self._ring(order)
        self.add_send_filter_factory(VisibilityFilterFactory(ring_visibility(order, majorities_reach(len(order)))))

    # --- process pauses ------------------------------------------------------------------------
    def pause(self, node_id: str, seconds: float) -> None:
        """Stop ``node_id`` like SIGSTOP for ``seconds``: it neither ticks nor reads while its peers go
        on.  What is sent to it waits in its buffers (on ``fifo`` nothing is lost unless the connection
        closes meanwhile); its clock keeps running, so when it continues it handles the whole backlog
        with its timers long expired, then ticks."""
        slot = self._slot(node_id)
        if slot.obj is None:
            raise ValueError(f"node_id {node_id!r} is crashed; only a running node can be paused")
        if self._net.is_paused(node_id):
            raise ValueError(f"node_id {node_id!r} is already paused")
        seconds = _positive_seconds("seconds", seconds, MAX_PAUSE)
        self._net.pause(node_id)
        slot.timer_gen += 1  # its pending tick never comes
        self._events.at(self.now + seconds, self._resume, slot, slot.incarnation)

    def is_paused(self, node_id: str) -> bool:
        self._slot(node_id)
        return self._net.is_paused(node_id)

    def _resume(self, slot, incarnation: int) -> None:
        if slot.obj is None or slot.incarnation != incarnation or not self._net.is_paused(slot.id):
            return  # crashed meanwhile: the backlog died with it
        backlog = self._net.resume(slot.id)
        slot.draining = True  # pysyncobj's poller hands it every ready socket before the next tick
        try:
            for thunk in backlog:
                thunk()
        finally:
            slot.draining = False
        if slot.obj is not None:
            self._tick(slot)

    # --- clock skew ----------------------------------------------------------------------------
    def skew_clock(self, node_id: str, rate: float) -> None:
        """Run ``node_id``'s monotonic clock at ``rate`` times virtual time (0.5 to 2; 1 is normal
        speed again), so its election and heartbeat timers fire late or early.  Its local time is
        continuous and survives restarts (the clock belongs to the machine)."""
        slot = self._slot(node_id)
        if slot.clock is None:
            slot.clock = _clock.NodeClock(self._clock, rate)
        else:
            slot.clock.set_rate(rate)
        if self.skip_idle_ticks:
            self._wake(slot)  # its skipped ticks were planned on the shared clock

    def clock_rate(self, node_id: str) -> float:
        slot = self._slot(node_id)
        return 1.0 if slot.clock is None else slot.clock.rate

    def local_time(self, node_id: str) -> float:
        """What ``node_id``'s monotonic clock reads now (the cluster's time unless it was skewed)."""
        slot = self._slot(node_id)
        return self.now if slot.clock is None else slot.clock.now()

    # --- leadership transfer -------------------------------------------------------------------
    def transfer_leadership(self, to: Optional[str] = None) -> LeadershipTransfer:
        """Ask the leader to hand over to voter ``to`` (None: pysyncobj picks); pysyncobj 0.3.16+.

        pysyncobj refuses (``REQUEST_DENIED``) a target that is not fully caught up; otherwise it
        sends ``timeout_now`` and the target starts an election at once.
        """
        if not CAN_TRANSFER_LEADERSHIP:
            raise NotImplementedError(f"leadership transfer needs pysyncobj 0.3.16 or later, "
                                      f"this is {compat.VERSION}")
        leader = self.leader()
        if leader is None:
            raise ValueError("leadership transfer goes through the leader, and there is none; wait_leader() first")
        if to is not None:
            slot = self._slot(to, "to")
            if not slot.voter or to == leader:
                voters = [v for v in self.voter_ids if v != leader]
                raise ValueError(f"to must be None or a voter other than the leader {leader}: one of {voters}, "
                                 f"got {to!r}")
        record = LeadershipTransfer(to, leader, self.now)
        self.leadership_transfers.append(record)

        def on_result(result: Any, error: int) -> None:
            record.complete = self.now
            record.outcome = OK if error == FAIL_REASON.SUCCESS else FAILED
            record.reason = None if error == FAIL_REASON.SUCCESS else compat.FAIL_REASONS.get(error, str(error))

        obj = self._slots[leader].obj
        target = None if to is None else SimNode(to)
        with self._active():
            self._run_on(leader, f"transfer leadership to {to or 'any'}",
                         lambda: obj.transferLeadership(target, callback=on_result))
        return record

    # --- clients -------------------------------------------------------------------------------
    def timed_put(self, key: Any, value: Any, timeout: float, via: Optional[str] = None) -> Operation:
        """A write whose client waits at most ``timeout`` virtual seconds: if pysyncobj has not
        answered by then the outcome is unknown (``CLIENT_TIMEOUT``; it may still take effect)."""
        timeout = _positive_seconds("timeout", timeout, math.inf)
        op = self.put(key, value, via)
        if op.outcome == PENDING:
            self._events.at(self.now + timeout, self._give_up, op)
        return op

    def _give_up(self, op: Operation) -> None:
        if op.outcome == PENDING:
            self._finish(op, UNKNOWN, CLIENT_TIMEOUT)

    def local_read(self, key: Any, via: Optional[str] = None) -> Operation:
        """Read ``key`` from ``via``'s own state (``node_class.local_get``), outside the log.

        Recorded as a ``local_read`` with the applied index and incarnation that answered; such reads
        may be stale, so :mod:`harness.check.local_reads` judges them, not linearizability.  A paused
        node answers when it continues.
        """
        via = self._client_target(via)
        slot = self._slots[via]
        obj = slot.obj
        reader = getattr(obj, "local_get", None)
        if obj is not None and not callable(reader):
            raise ValueError(f"via must run a node_class with local_get(key) for local reads; "
                             f"{type(obj).__name__} has none")
        op = self.history.invoke(LOCAL_READ, key, None, via, self.now)
        if obj is None:
            self._finish(op, FAILED, "NODE_DOWN")
            return op
        incarnation = slot.incarnation

        def answer() -> None:
            if slot.obj is not obj:
                return  # crashed while paused: the read's outcome is already unknown
            op.value = reader(key)
            op.index = compat.applying_index(obj) - 1  # the last index applied
            op.incarnation = incarnation
            self._finish(op, OK, None)

        with self._active():
            self._run_on(via, f"local read {key!r}", answer)
        return op
