"""The harness thread of a :class:`~harness.tcp.TcpCluster`, and everything it and the clean-up own.

*One harness thread ticks every node* (``autoTick=False``; ``doTick(0)`` for
each live node, then the timers of delayed and released messages, then a wait
of ``poll_interval`` seconds).  All pysyncobj code runs under one cluster lock,
either on that thread or briefly on the caller's (a client call, a crash, a
filter change), never concurrently.  That is why it is preferred to
``autoTick=True`` (a thread per node): an observation of a node
(:func:`harness.adapter.observe.observe` reads name-mangled state and the mmap'd
journal that the tick mutates in place) and of the whole cluster is a
consistent cut; a crash is atomic between two ticks (pysyncobj's own
``destroy()`` with ``autoTick`` only asks the node's thread to stop on its
next tick); filters and their seeded generator are single-threaded; and there
is exactly one thread to stop, joined with a timeout.  The price is up to
``poll_interval`` (5 ms) of extra latency per hop, small against the 100 ms
heartbeat.

:class:`TickLoop` holds no reference to the cluster object, so a cluster
dropped without ``close()`` is collected and its finalizer (also run at
interpreter exit) stops the thread and releases everything.
"""
from __future__ import annotations

import collections
import shutil
import threading
import time
import traceback
from pathlib import Path
from typing import Counter, Dict, List, Optional

from harness.adapter import observe as compat
from harness.contract import NodeError
from harness.sim import clock as _clock
from harness.tcp.network import TcpNetwork
from harness.tcp.transport import HOST

__all__ = ["NodeSlot", "TickLoop", "MAX_NODE_ERRORS"]

#: NodeErrors kept per cluster; a node failing on every tick would otherwise grow the list 200 times a second.
MAX_NODE_ERRORS = 1000


class NodeSlot:
    """What the harness keeps about one node id, outside the node object: its files, port and incarnation."""

    def __init__(self, node_id: str, directory: Path, port: int) -> None:
        self.id = node_id
        self.voter = True
        self.dir = directory
        self.port = port
        self.obj = None  # live SyncObj, None while crashed
        self.incarnation = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


class TickLoop:
    """What the harness thread and the clean-up need, with no reference back to the TcpCluster.

    So a cluster dropped without :meth:`~harness.tcp.TcpCluster.close` is still collected,
    and its finalizer (also run at interpreter exit) stops the thread, closes
    every socket and file and removes the temp dir.
    """

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self.t0 = time.monotonic()
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.slots: Dict[str, NodeSlot] = {}
        self.net: Optional[TcpNetwork] = None
        self.root: Optional[Path] = None
        self.thread: Optional[threading.Thread] = None
        self.counters: Counter[str] = collections.Counter()
        self.node_errors: List[NodeError] = []
        self.loop_error: Optional[str] = None
        self.clock_conflict = False
        self.closed = False
        self._cleanup_on_exit = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    def record_error(self, node_id: str, activity: str, tb: str) -> None:
        with self.lock:
            if len(self.node_errors) >= MAX_NODE_ERRORS:
                self.counters["node_errors_dropped"] += 1
                return
            slot = self.slots[node_id]
            self.node_errors.append(NodeError(node_id, slot.incarnation, activity, self.now(), tb))

    def kill(self, slot: NodeSlot) -> None:
        """Crash one node: every socket closed, journal closed unflushed, nothing saved."""
        self.net.node_down(slot.id)
        compat.close_files(slot.obj)
        slot.obj = None

    # the harness thread
    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with self.lock:
                    if self.stop.is_set():
                        break
                    if _clock.patched():  # a simulated Cluster opened meanwhile: its clock is not ours
                        self.clock_conflict = True
                    else:
                        for node_id in sorted(self.slots):
                            slot = self.slots[node_id]
                            if slot.obj is not None:
                                self._tick(slot)
                        self.net.run_timers()
                self.wake.wait(self.poll_interval)
                self.wake.clear()
        except BaseException:
            self.loop_error = traceback.format_exc()
        finally:
            if self._cleanup_on_exit:
                self._cleanup()

    def _tick(self, slot: NodeSlot) -> None:
        self.counters["ticks"] += 1
        try:
            slot.obj.doTick(0.0)
        except Exception:
            self.record_error(slot.id, "tick", traceback.format_exc())

    # shutting down
    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop the thread, then release everything; idempotent.  False if the thread would not stop."""
        if self.closed:
            return True
        self.closed = True
        self.stop.set()
        self.wake.set()
        thread = self.thread
        if thread is not None and thread is threading.current_thread():
            self._cleanup_on_exit = True  # collected on the harness thread itself: clean up as it exits
            return True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self._cleanup(timeout)
                return False
        self._cleanup(timeout)
        return True

    def _cleanup(self, timeout: float = 10.0) -> None:
        locked = self.lock.acquire(timeout=timeout)
        try:
            for slot in self.slots.values():
                if slot.obj is not None:
                    try:
                        self.kill(slot)
                    except Exception:
                        slot.obj = None
        finally:
            if locked:
                self.lock.release()
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
