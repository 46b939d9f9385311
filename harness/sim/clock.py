"""Virtual time and seeded randomness for simulated clusters.

pysyncobj reads time through ``pysyncobj.syncobj.monotonicTime`` and draws its
election timeouts from ``pysyncobj.syncobj.random``.  While any simulated
cluster is alive both are routed to dispatchers that forward to the clock and
generator of the cluster currently running (see :func:`activate`), so a run is
a pure function of the cluster's seed.  (The one other wall-clock leak, the
timestamp gzip writes into snapshot dumps, is pinned to 0.)  The originals come
back when the last cluster closes, also when a cluster fails half-way through
construction.  This module keeps the clocks and the reference count; swapping
pysyncobj's module globals is :mod:`harness.adapter.timing`'s job.

A node whose clock runs at another rate (clock skew, :class:`NodeClock`) gets its own reader for as
long as its code runs (:func:`route`): one attribute store per activation, nothing for the others.
"""
from __future__ import annotations

import math
import random
from typing import List, Optional

from harness.adapter import timing


class VirtualClock:
    """Monotonic virtual time that moves only when told to, plus a tiny step on every read.

    The read step matters: pysyncobj has loops that run "until
    ``appendEntriesPeriod`` has elapsed"; a frozen clock would spin them forever.
    """

    def __init__(self, start: float = 0.0, read_step: float = 1e-6) -> None:
        if not isinstance(read_step, (int, float)) or not math.isfinite(read_step) or read_step < 0:
            raise ValueError(f"read_step must be >= 0 virtual seconds, got {read_step!r}")
        self._now = float(start)
        self.read_step = read_step

    def now(self) -> float:
        """Current time, without advancing it (for the harness itself)."""
        return self._now

    def read(self) -> float:
        """What pysyncobj sees: the time, which then moves on by ``read_step``."""
        t = self._now
        self._now = t + self.read_step
        return t

    def advance_to(self, t: float) -> None:
        """Move time forward to ``t``; a target in the past is ignored, time never goes back."""
        if t > self._now:
            self._now = t

    def advance(self, dt: float) -> None:
        if not math.isfinite(dt) or dt < 0:
            raise ValueError(f"dt must be >= 0 virtual seconds, got {dt!r}")
        self._now += dt


#: The clock rates a :class:`NodeClock` accepts (times the speed of virtual time).
MIN_RATE, MAX_RATE = 0.5, 2.0


class NodeClock:
    """One node's monotonic clock, running at ``rate`` times the speed of the shared :class:`VirtualClock`.

    It starts equal to the shared time and stays continuous when the rate changes, so the node's
    own readings never go back; every read still moves the shared clock by its ``read_step``.
    """

    def __init__(self, base: VirtualClock, rate: float = 1.0) -> None:
        self._base = base
        self._anchor_base = base.now()
        self._anchor_local = base.now()
        self.rate = check_rate(rate)

    def now(self) -> float:
        """The node's local time now, without advancing anything."""
        return self._anchor_local + self.rate * (self._base.now() - self._anchor_base)

    def read(self) -> float:
        """What the node's pysyncobj sees: its local time (the shared clock moves on by ``read_step``)."""
        return self._anchor_local + self.rate * (self._base.read() - self._anchor_base)

    def set_rate(self, rate: float) -> None:
        """Run at ``rate`` from now on, continuing from the local time reached so far."""
        rate = check_rate(rate)
        self._anchor_local, self._anchor_base = self.now(), self._base.now()
        self.rate = rate


def check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"rate must be a number in [{MIN_RATE}, {MAX_RATE}] (times the speed of virtual "
                         f"time), got {rate!r}")
    return float(rate)


def route(read) -> None:
    """Make ``read`` pysyncobj's clock until the next call: for a node with its own :class:`NodeClock`,
    set before its code runs and reset to the cluster's clock after (inside an :class:`activate`)."""
    timing.set_time_source(read)


class _Dispatch:
    """Stands in for pysyncobj's clock and random module while clusters are alive."""

    def __init__(self) -> None:
        self.stack: List[tuple] = []  # (clock, rng) of the running clusters, innermost last
        self.users = 0
        self.saved: Optional[timing.Saved] = None

    def monotonic(self) -> float:
        if not self.stack:
            raise RuntimeError("pysyncobj read the clock outside a simulated cluster step")
        return self.stack[-1][0].read()

    def random(self) -> float:
        if not self.stack:
            raise RuntimeError("pysyncobj drew randomness outside a simulated cluster step")
        return self.stack[-1][1].random()


_DISPATCH = _Dispatch()


def acquire() -> None:
    """Install the dispatchers (reference counted: one call per live cluster)."""
    if _DISPATCH.users == 0:
        _DISPATCH.saved = timing.install(_DISPATCH.monotonic, _DISPATCH.random)
    _DISPATCH.users += 1


def release() -> None:
    """Undo one :func:`acquire`; the last one restores pysyncobj's own clock and random."""
    if _DISPATCH.users <= 0:
        return
    _DISPATCH.users -= 1
    if _DISPATCH.users == 0:
        timing.restore(_DISPATCH.saved)
        _DISPATCH.saved = None


def patched() -> bool:
    """True while any simulated cluster holds the patch."""
    return _DISPATCH.users > 0


class activate:
    """Route pysyncobj's clock and randomness to this cluster for the duration of a step.

    While active, ``pysyncobj.syncobj.monotonicTime`` is the clock's own bound
    ``read``: pysyncobj reads the time ~6 times per tick, so the indirection
    matters (and so does this being a plain class, not a generator).
    """

    __slots__ = ("_entry",)

    def __init__(self, clock: VirtualClock, rng: random.Random) -> None:
        self._entry = (clock, rng)

    def __enter__(self) -> None:
        _DISPATCH.stack.append(self._entry)
        timing.set_time_source(self._entry[0].read)

    def __exit__(self, *exc) -> None:
        _DISPATCH.stack.pop()
        timing.set_time_source(_DISPATCH.stack[-1][0].read if _DISPATCH.stack else _DISPATCH.monotonic)
