"""Skipping the ticks at which no pysyncobj timer can fire (``Cluster(skip_idle_ticks=True)``).

Most periodic ticks of a healthy cluster change nothing: a follower's election deadline keeps being
pushed back by heartbeats, and the tick after an answered heartbeat finds no work.  Such a tick only
reads the clock, so with skipping a node's next tick lands on the first point of its usual grid
(every ``tick_interval`` after its last tick) from which :func:`harness.adapter.observe.next_deadline`
says a timer may fire, and any other input puts it back on its next grid point.  pysyncobj sees the
ticks a poller woken by its own timers would give it.  Opt-in: the clock reads of the skipped ticks
are missing, so times (and the trace digest) move by read steps; with ``read_step=0`` a run is
unchanged (tests/test_tick_skipping.py).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

from pysyncobj import SyncObj

from harness.adapter import observe as compat

if TYPE_CHECKING:
    from harness.sim.cluster import _Slot


class TickSkipping:
    """The tick schedule of :class:`harness.sim.cluster.Cluster`; with ``skip_idle_ticks`` slots keep
    ``anchor`` (when the last tick ended) and ``next_tick`` (when the next is due)."""

    def _schedule_tick(self, slot: "_Slot", at: float) -> None:
        slot.timer_gen += 1
        self._events.at(at, self._timer, slot, slot.timer_gen)

    def _timer(self, slot: "_Slot", gen: int) -> None:
        if gen == slot.timer_gen and slot.obj is not None:
            self._tick(slot)

    def _idle_until(self, slot: "_Slot", obj: SyncObj) -> Optional[float]:
        """With ``skip_idle_ticks``, the time before which a tick of ``obj`` would only read the clock
        (:func:`harness.adapter.observe.next_deadline`, half a period early: a tick's reads move the
        clock on a little past its grid point); None when never skipped (a node on its own clock)."""
        if not self.skip_idle_ticks or slot.clock is not None:
            return None
        return compat.next_deadline(obj) - self.tick_interval / 2

    def _schedule_next_tick(self, slot: "_Slot", obj: SyncObj, due: Optional[float] = None) -> None:
        """Every ``tick_interval`` after the last tick; with ``skip_idle_ticks``, at the first point of
        that grid not before ``due`` (default: :meth:`_idle_until`)."""
        now = self._clock.now()
        at = now + self.tick_interval
        if due is None:
            due = self._idle_until(slot, obj)
        if due is not None:
            slot.anchor = now
            if due > at:
                if math.isinf(due):
                    slot.timer_gen += 1  # only an input can make it act: _wake
                    slot.next_tick = due
                    return
                at = self._grid_point(at, due)
        slot.next_tick = at
        self._schedule_tick(slot, at)

    def _grid_point(self, at: float, due: float) -> float:
        """The first of ``at``, ``at + tick_interval``, ... not before ``due``, summed one period at a
        time as the skipped ticks would have scheduled each other (a product rounds differently)."""
        while at < due:
            at += self.tick_interval
        return at

    def _wake(self, slot: "_Slot") -> None:
        """An input reached a node whose periodic ticks were skipped: back to the next point of its grid."""
        now = self._clock.now()
        if slot.next_tick <= now + self.tick_interval or slot.obj is None or self._net.is_paused(slot.id):
            return
        at = self._grid_point(slot.anchor + self.tick_interval, now)
        if at < slot.next_tick:
            slot.next_tick = at
            self._schedule_tick(slot, at)
