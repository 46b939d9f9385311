"""Where pysyncobj gets its time, its randomness and its gzip timestamps from.

pysyncobj reads the clock through the module global ``pysyncobj.syncobj.monotonicTime``,
draws election timeouts from ``pysyncobj.syncobj.random`` (calling only
``random()``) and writes snapshot dumps with ``pysyncobj.serializer.gzip``,
which stamps the wall-clock time into every header.  Those three names are
swapped here and nowhere else, so a release that renames one means editing
this file only.  What the time *is* stays with the caller:
:mod:`harness.sim.clock` keeps the virtual clocks and decides when to install
and restore, the probes of :mod:`harness.adapter.probes` bring a private one.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import random
from typing import Any, Callable, Iterator, Tuple

import pysyncobj.serializer as _serializer
import pysyncobj.syncobj as _syncobj

#: What :func:`install` replaced: ``(monotonicTime, random, gzip)`` as they were.
Saved = Tuple[Callable[[], float], Any, Any]


class _RandomFacade:
    """Replaces the ``random`` module inside ``pysyncobj.syncobj`` (it only calls ``random()``)."""

    def __init__(self, draw: Callable[[], float]) -> None:
        self._draw = draw

    def random(self) -> float:
        return self._draw()

    def __getattr__(self, name: str):  # any other use is a new pysyncobj dependency worth hearing about
        raise AttributeError(f"pysyncobj.syncobj used random.{name}, which the harness does not simulate")


class _GzipWithoutWallClock:
    """Stands in for the ``gzip`` module inside ``pysyncobj.serializer``.

    gzip stamps the wall-clock time into every header it writes, which would
    make snapshot bytes (and so the message trace) differ from run to run.
    """

    GzipFile = staticmethod(functools.partial(gzip.GzipFile, mtime=0))


def install(time_source: Callable[[], float], draw: Callable[[], float]) -> Saved:
    """Make pysyncobj read ``time_source()`` as its clock, take ``draw()`` as ``random.random()``
    and write dumps with gzip timestamps pinned to 0; returns what to hand to :func:`restore`."""
    saved = (_syncobj.monotonicTime, _syncobj.random, _serializer.gzip)
    _syncobj.monotonicTime = time_source
    _syncobj.random = _RandomFacade(draw)
    _serializer.gzip = _GzipWithoutWallClock
    return saved


def restore(saved: Saved) -> None:
    """Put back what :func:`install` replaced."""
    _syncobj.monotonicTime, _syncobj.random, _serializer.gzip = saved


def set_time_source(time_source: Callable[[], float]) -> None:
    """Point pysyncobj's clock at ``time_source`` (between :func:`install` and :func:`restore`).

    pysyncobj reads the time ~6 times per tick, so the simulation hands it a
    clock's bound ``read`` directly rather than a function that forwards to it.
    """
    _syncobj.monotonicTime = time_source


@contextlib.contextmanager
def private_clock(time_source: Callable[[], float], rng: random.Random) -> Iterator[None]:
    """pysyncobj's clock and ``random`` module replaced by ``time_source`` and ``rng`` for the block
    (gzip untouched), whatever was installed before: for a lone node driven by hand, next to a
    simulated cluster whose clock refuses reads outside its steps."""
    saved = (_syncobj.monotonicTime, _syncobj.random)
    _syncobj.monotonicTime = time_source
    _syncobj.random = rng
    try:
        yield
    finally:
        _syncobj.monotonicTime, _syncobj.random = saved
