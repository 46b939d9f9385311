"""``TcpCluster``: real pysyncobj nodes over pysyncobj's own TCP transport, on loopback, in wall-clock time.

The simulated :class:`~harness.Cluster` owns time and the network; this one
owns neither.  Every node is a ``pysyncobj.SyncObj`` listening on
``127.0.0.1:<port from alloc_port()>`` with pysyncobj's real ``TCPTransport``
(real sockets, real connects, reconnects and timeouts), and time is the wall
clock.  The harness' filter chains still see every Raft message: the transport
(:mod:`harness.tcp.transport`) runs the node's send chain before a message
reaches the socket and its receive chain after it was read from one
(:mod:`harness.tcp.network`), and one harness thread ticks every node
(:mod:`harness.tcp.runner`)::

    from harness.tcp import TcpCluster

    with TcpCluster(nodes=3, seed=0) as c:           # any SyncObjConf keyword passes through
        leader = c.wait_leader()
        c.must_put("k", 1)
        c.isolate_node(leader)                       # or c.partition(["n1"], ["n2", "n3"])
        c.wait_leader()                              # a new one, among the others
        c.clear_all_filters()
        c.crash("n3"); c.restart("n3")               # same port, same journal and dump files
        assert c.must_get("k") == 1

Both clusters implement :class:`harness.contract.ClusterLike` (``put``/``get``/
``must_put``/``must_get``, ``partition``, ``isolate_node``, ``add_send_filter``,
``add_recv_filter``, ``clear_all_filters``, ``crash``, ``restart``,
``force_snapshot``, ``state``, ``observe``, ``history``, ``node_errors``,
``run_for``/``run_until`` …), with wall seconds where the simulation has virtual
ones, so :func:`harness.util.eventually` and :func:`~harness.util.retry` with
``cluster=`` and :class:`~harness.check.invariants.SafetyChecker` work unchanged.
A run is not reproducible: the seed drives the filters' randomness only.

Crash closes every socket of the node (listening, outgoing, accepted) and its
journal without any clean shutdown (no flush, nothing saved); the files stay.
Restart builds a new ``SyncObj`` on the same port and files.  Each node binds
``127.0.0.1`` only (``bindAddress``), uses ``useFork=False`` and keeps its
journal and full dump in a private temp dir removed by :meth:`TcpCluster.close`.

Only one kind of cluster per process at a time: a simulated ``Cluster``
replaces pysyncobj's clock and random module process-wide while it is open,
which real-time nodes cannot run against.  Membership changes and read-only
nodes are not supported here.
"""
from __future__ import annotations

import threading
import time
import traceback
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from pysyncobj import SyncObjConf

from harness.adapter import observe as compat
from harness.contract import ClusterBase, NodeError
from harness.history import FAILED, OK, PENDING, READ, UNKNOWN, WRITE, History, Operation
from harness.kv import KVStore
from harness.sim import clock as _clock
from harness.state import NodeState
from harness.tcp.network import TcpNetwork
from harness.tcp.runner import NodeSlot, TickLoop
from harness.tcp.transport import HOST, FilteredTCPTransport, NamedTCPNode
from harness.util import alloc_port, owned_dir
from harness.wire.filters import Filter, FilterFactory
from harness.wire.messages import Envelope

__all__ = ["TcpCluster"]


class TcpCluster(ClusterBase):
    """A pysyncobj cluster over real loopback TCP.  Use as a context manager, or call :meth:`close`.

    ``nodes`` voters ``n1``…; ``seed`` seeds the filters' randomness;
    ``network`` is ``"fifo"`` or ``"unreliable"`` (see the module docstring);
    ``poll_interval`` is the harness thread's wait between tick rounds;
    ``reconnect_delay`` how long a link broken by a dropped message stays down
    (fifo).  Other keywords are ``SyncObjConf`` settings; the defaults differ
    from pysyncobj's in ``connectionRetryTime=0.25`` (pysyncobj: 5 s, so a
    restarted node would wait that long for peers that dial it),
    ``maxBindRetries=50``/``bindRetryTime=0.1`` (pysyncobj: retry forever) and,
    as in ``Cluster``, compaction only when forced and ``dynamicMembershipChange``.

    A cluster that is dropped without :meth:`close` stops and cleans up when
    it is garbage-collected, or at the latest when the interpreter exits.
    """

    _TIME_UNIT = "seconds"
    #: SyncObjConf settings the harness owns: key -> why it cannot be set.
    _FORBIDDEN_CONF = {
        "autoTick": "the harness thread ticks every node itself",
        "useFork": "a forked dump writer would outlive close()",
        "journalFile": "the harness gives every node its own files",
        "fullDumpFile": "the harness gives every node its own files",
        "bindAddress": "every node binds 127.0.0.1 on its own port",
    }
    #: Where the harness' defaults differ from pysyncobj's (see the class docstring).
    _DEFAULT_CONF = dict(dynamicMembershipChange=True, logCompactionMinEntries=10 ** 9,
                         logCompactionMinTime=10 ** 9, connectionRetryTime=0.25,
                         bindRetryTime=0.1, maxBindRetries=50)

    def __init__(self, nodes: int = 3, seed: int = 0, network: str = "fifo", *,
                 node_class: type = KVStore, poll_interval: float = 0.005, reconnect_delay: float = 0.2,
                 **pysyncobj_conf: Any) -> None:
        self._check_cluster_args(nodes, seed, network)
        poll_interval = self._check_seconds("poll_interval", poll_interval, positive=True)
        reconnect_delay = self._check_seconds("reconnect_delay", reconnect_delay)
        self._conf = self._check_pysyncobj_conf(pysyncobj_conf, self._FORBIDDEN_CONF, self._DEFAULT_CONF)
        if _clock.patched():
            raise RuntimeError("a simulated harness.Cluster is open in this process and has replaced "
                               "pysyncobj's clock; close it before starting a TcpCluster")
        self.seed = seed
        self.network_model = network
        self.poll_interval = poll_interval
        self._node_class = node_class
        self._factories: List[FilterFactory] = []
        self.history = History()
        loop = self._loop = TickLoop(poll_interval)
        self._lock = loop.lock
        self._slots = loop.slots
        self.node_errors: List[NodeError] = loop.node_errors
        self._net = loop.net = TcpNetwork(network, self._network_rng(seed), loop.now, loop.lock,
                                          loop.record_error, reconnect_delay)
        self._finalizer = weakref.finalize(self, loop.shutdown)
        try:
            loop.root = owned_dir()
            for i in range(1, nodes + 1):
                node_id = f"n{i}"
                directory = loop.root / node_id
                directory.mkdir()
                self._slots[node_id] = NodeSlot(node_id, directory, alloc_port(HOST))
                self._net.register(node_id)
            for node_id in self.node_ids:
                self._start(self._slots[node_id])
            loop.thread = threading.Thread(target=loop.run, name=f"raft-harness-tcp-{seed}", daemon=True)
            loop.thread.start()
        except BaseException:
            self.close()
            raise

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the harness thread, close every socket and file, delete the temp dir. Idempotent."""
        if not self._finalizer.alive:
            return
        if not self._finalizer():
            raise RuntimeError("the TcpCluster harness thread did not stop within 10 s")

    @property
    def closed(self) -> bool:
        return self._loop.closed

    @property
    def root(self) -> Optional[Path]:
        """The temp dir holding every node's journal and dump (removed by :meth:`close`)."""
        return self._loop.root

    def _node_ref(self, node_id: str) -> NamedTCPNode:
        return NamedTCPNode(node_id, self._slots[node_id].address)

    def _start(self, slot: NodeSlot) -> None:
        """Build a new incarnation (binds its port; outside the lock, the others keep ticking)."""
        slot.incarnation += 1
        conf = SyncObjConf(autoTick=False, useFork=False, journalFile=str(slot.dir / "journal"),
                           fullDumpFile=str(slot.dir / "dump"), bindAddress=slot.address, **self._conf)
        built: List[FilteredTCPTransport] = []
        net = self._net

        def transport(syncObj, selfNode, otherNodes):
            t = FilteredTCPTransport(net, slot.id, syncObj, selfNode, otherNodes)
            built.append(t)
            return t

        peers = [self._node_ref(p) for p in self.node_ids if p != slot.id]
        try:
            obj = self._node_class(self._node_ref(slot.id), peers, conf, transportClass=transport)
        except Exception:
            tb = traceback.format_exc()
            for t in built:  # e.g. a failed bind: release what the half-built node holds
                t.kill()
                try:
                    compat.close_files(t._syncObj)
                except Exception:
                    pass
            self._loop.record_error(slot.id, "starting", tb)
            raise
        compat.watch_journal(obj)
        with self._lock:
            slot.obj = obj
            net.node_up(slot.id, built[0])
        self._loop.wake.set()

    def _check_running(self) -> None:
        loop = self._loop
        if loop.closed:
            raise RuntimeError("this TcpCluster is closed")
        if loop.loop_error is not None:
            raise RuntimeError(f"the TcpCluster harness thread died:\n{loop.loop_error}")
        if loop.clock_conflict:
            raise RuntimeError("a simulated harness.Cluster was opened while this TcpCluster runs; its "
                               "virtual clock replaced pysyncobj's, so ticking stopped")

    # --- time ------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """Wall seconds since the cluster started."""
        return self._loop.now()

    def run_for(self, seconds: float) -> None:
        """Let the cluster run ``seconds`` of wall time."""
        deadline = time.monotonic() + self._check_seconds("seconds", seconds)
        while True:
            self._check_running()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def run_until(self, predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.01) -> bool:
        """Poll ``predicate()`` until it holds (True) or ``timeout`` wall seconds pass (False)."""
        deadline = time.monotonic() + self._check_seconds("timeout", timeout)
        while True:
            self._check_running()
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, interval))

    def tick(self) -> None:
        """Wait about one round of ticks of every node."""
        self.run_for(self.poll_interval)

    # --- observation -----------------------------------------------------------------------
    @property
    def node_ids(self) -> List[str]:
        return sorted(self._slots)

    @property
    def voter_ids(self) -> List[str]:
        return self.node_ids

    def _slot(self, node_id: str, arg: str = "node_id") -> NodeSlot:
        slot = self._slots.get(node_id)
        if slot is None:
            raise ValueError(f"{arg} must be one of {self.node_ids}, got {node_id!r}")
        return slot

    def address(self, node_id: str) -> str:
        """``127.0.0.1:port`` that ``node_id`` listens on (the same across restarts)."""
        return self._slot(node_id).address

    @property
    def ports(self) -> Dict[str, int]:
        return {i: s.port for i, s in sorted(self._slots.items())}

    def node(self, node_id: str) -> Any:
        """The live SyncObj of ``node_id`` (None while crashed); touch it only under :meth:`locked`."""
        return self._slot(node_id).obj

    def locked(self) -> threading.RLock:
        """The cluster lock: hold it to read a node object directly while the harness thread waits."""
        return self._lock

    def state(self, node_id: str) -> NodeState:
        slot = self._slot(node_id)
        with self._lock:
            return self._observe(slot, consume=False)

    def observe(self) -> Tuple[NodeState, ...]:
        """Every node's state at one instant (between two ticks), consuming the log-change marks."""
        with self._lock:
            return tuple(self._observe(self._slots[i], consume=True) for i in self.node_ids)

    def leader(self) -> Optional[str]:
        """The up node in leader role with the highest term, or None (read under the cluster lock)."""
        with self._lock:
            return super().leader()

    def wait_leader(self, timeout: float = 30.0) -> str:
        """Wait until some node is leader and return its id; TimeoutError after ``timeout`` wall seconds."""
        found: List[str] = []

        def elected() -> bool:
            leader = self.leader()
            if leader is not None:
                found.append(leader)
            return leader is not None

        if not self.run_until(elected, timeout):
            raise TimeoutError(f"no leader elected within {timeout} s; up: {self.up_ids()}, "
                               f"filters on: {self._filtered_nodes()}")
        return found[-1]

    def _filtered_nodes(self) -> List[str]:
        with self._lock:
            return [i for i in self.node_ids if any(self._net.filters(i))]

    def connected(self, a: str, b: str) -> bool:
        """Does ``a``'s transport have a live connection to ``b``?"""
        self._slot(a, "a")
        self._slot(b, "b")
        with self._lock:
            transport = self._net.transports.get(a)
            return transport is not None and transport.connected(b)

    @property
    def stats(self) -> Dict[str, int]:
        """Counters: ticks, crashes, restarts, snapshots_forced; sent, delivered, dropped, held,
        released, delayed, lost (delayed past a broken connection or a crash), resets, cuts."""
        with self._lock:
            return {**self._loop.counters, **self._net.stats}

    def delivered(self, src: Optional[str] = None, dst: Optional[str] = None, kind: Optional[str] = None) -> int:
        """Messages handed to pysyncobj (after the receive chain), optionally by sender, receiver, type."""
        with self._lock:
            return sum(n for (s, d, k), n in self._net.delivered_by.items()
                       if src in (None, s) and dst in (None, d) and kind in (None, k))

    def dropped(self, src: Optional[str] = None, dst: Optional[str] = None, kind: Optional[str] = None) -> int:
        """Messages dropped by a filter, on either side, optionally by sender, receiver, type."""
        with self._lock:
            return sum(n for (s, d, k), n in self._net.dropped_by.items()
                       if src in (None, s) and dst in (None, d) and kind in (None, k))

    @property
    def messages_delivered(self) -> int:
        return self.stats.get("delivered", 0)

    @property
    def recent_messages(self) -> List[Tuple[float, Envelope]]:
        """The last messages delivered, as (wall seconds since start, Envelope)."""
        with self._lock:
            return list(self._net.recent)

    # --- clients ---------------------------------------------------------------------------
    def _invoke(self, kind: str, key: Any, value: Any, via: Optional[str]) -> Operation:
        self._check_running()
        via = self._client_target(via)
        history, now, settle = self.history, self._loop.now, self._settle  # the callback must not hold the cluster
        with self._lock:
            obj = self._slots[via].obj
            op = history.invoke(kind, key, value, via, now())
            if obj is None:
                history.finish(op, FAILED, "NODE_DOWN", now())
                return op

            def on_result(result: Any, error: int) -> None:  # on the harness thread, inside a tick
                settle(op, obj, result, error, lambda o, outcome, reason: history.finish(o, outcome, reason, now()))

            try:
                if kind == WRITE:
                    obj.set(key, value, callback=on_result)
                else:
                    obj.get(key, callback=on_result)
            except Exception:
                self._loop.record_error(via, f"client {kind}", traceback.format_exc())
        self._loop.wake.set()
        return op

    def put(self, key: Any, value: Any, via: Optional[str] = None) -> Operation:
        """Propose a write through ``via`` (default: the leader); returns its history entry at once."""
        return self._invoke(WRITE, key, value, via)

    def get(self, key: Any, via: Optional[str] = None) -> Operation:
        """Propose a read through the log (linearizable); the value lands on the operation."""
        return self._invoke(READ, key, None, via)

    def _must(self, kind: str, key: Any, value: Any, timeout: float, attempt_timeout: float = 5.0) -> Operation:
        """Propose through the current leader until one attempt commits (each gets ``attempt_timeout``)."""
        deadline = time.monotonic() + self._check_seconds("timeout", timeout)
        last = None
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is None:
                if not self.run_until(lambda: self.leader() is not None, max(deadline - time.monotonic(), 0)):
                    break
                leader = self.leader()
                if leader is None:
                    continue
            attempt = last = self._invoke(kind, key, value, leader)
            self.run_until(lambda: attempt.outcome != PENDING,
                           max(min(attempt_timeout, deadline - time.monotonic()), 0))
            if attempt.outcome == OK:
                return attempt
            self.run_for(max(min(0.05, deadline - time.monotonic()), 0))
        raise AssertionError(f"{kind} {key!r} did not commit within {timeout} s; last attempt: {last}")

    def must_put(self, key: Any, value: Any, timeout: float = 30.0) -> Operation:
        """Write through the leader, retrying until committed; AssertionError after ``timeout`` s."""
        return self._must(WRITE, key, value, timeout)

    def must_get(self, key: Any, timeout: float = 30.0) -> Any:
        """Linearizable read through the leader, retrying until it commits."""
        return self._must(READ, key, None, timeout).value

    # --- faults ----------------------------------------------------------------------------
    def add_send_filter(self, node_id: str, f: Filter) -> None:
        self._slot(node_id)
        self._net.add_filter(node_id, "send", f)

    def add_recv_filter(self, node_id: str, f: Filter) -> None:
        self._slot(node_id)
        self._net.add_filter(node_id, "recv", f)

    def filters(self, node_id: str) -> Tuple[List[Filter], List[Filter]]:
        """(send chain, receive chain) of ``node_id``."""
        self._slot(node_id)
        with self._lock:
            return self._net.filters(node_id)

    def add_send_filter_factory(self, factory: FilterFactory) -> None:
        """Install ``factory``'s filters on every node's send side."""
        with self._lock:
            self._factories.append(factory)
            for node_id in self.node_ids:
                for f in factory.generate(node_id, self.node_ids):
                    self._net.add_filter(node_id, "send", f)

    def clear_all_filters(self) -> None:
        """Heal: release held messages and remove every filter; connections come back by themselves."""
        with self._lock:
            self._factories.clear()
            self._net.clear_filters()
        self._loop.wake.set()

    def clear_filters(self, node_id: str) -> None:
        self._slot(node_id)
        self._net.clear_filters(node_id)
        self._loop.wake.set()

    def crash(self, node_id: str) -> None:
        """Kill ``node_id`` without any shutdown: sockets closed, memory lost, journal and dump files kept."""
        slot = self._slot(node_id)
        with self._lock:
            if slot.obj is None:
                raise ValueError(f"node_id {node_id!r} is already crashed")
            self._loop.kill(slot)
            self._loop.counters["crashes"] += 1
            for op in self.history.pending():
                if op.via == node_id:
                    self.history.finish(op, UNKNOWN, "PROPOSER_CRASHED", self.now)

    def restart(self, node_id: str) -> None:
        """Start a new incarnation of a crashed node on the same port, from its journal and dump files."""
        self._check_running()
        slot = self._slot(node_id)
        if slot.obj is not None:
            raise ValueError(f"node_id {node_id!r} is up; crash it first")
        self._start(slot)
        self._loop.counters["restarts"] += 1

    def force_snapshot(self, node_id: str) -> None:
        """Ask ``node_id`` to compact its log now (the dump is written on its next ticks)."""
        slot = self._slot(node_id)
        with self._lock:
            if slot.obj is None:
                raise ValueError(f"node_id {node_id!r} is crashed; restart it first")
            slot.obj.forceLogCompaction()
            self._loop.counters["snapshots_forced"] += 1
        self._loop.wake.set()
