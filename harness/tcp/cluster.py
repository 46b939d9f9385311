"""``TcpCluster``: real pysyncobj nodes over pysyncobj's own TCP transport, on loopback, in wall-clock time.

The simulated :class:`~harness.Cluster` owns time and the network; this one
owns neither.  Every node is a ``pysyncobj.SyncObj`` listening on
``127.0.0.1:<port from alloc_port()>`` with pysyncobj's real ``TCPTransport``
(real sockets, real connects, reconnects and timeouts), and time is the wall
clock.  The harness' filter chains still see every Raft message: the transport
is a subclass of ``TCPTransport`` (``transportClass=``) whose ``send()`` runs the
node's send chain before a message reaches the socket and whose
``_onMessageReceived`` runs the receive chain after it was read from one::

    from harness.tcp.cluster import TcpCluster

    with TcpCluster(nodes=3, seed=0) as c:           # any SyncObjConf keyword passes through
        leader = c.wait_leader()
        c.must_put("k", 1)
        c.isolate_node(leader)                       # or c.partition(["n1"], ["n2", "n3"])
        c.wait_leader()                              # a new one, among the others
        c.clear_all_filters()
        c.crash("n3"); c.restart("n3")               # same port, same journal and dump files
        assert c.must_get("k") == 1

Method names and meanings follow :class:`harness.Cluster` (``put``/``get``/
``must_put``/``must_get``, ``partition``, ``isolate_node``, ``add_send_filter``,
``add_recv_filter``, ``clear_all_filters``, ``crash``, ``restart``,
``force_snapshot``, ``state``, ``observe``, ``history``, ``node_errors``,
``run_for``/``run_until`` …), with wall seconds where the simulation has virtual
ones, so :func:`harness.util.eventually` and :func:`~harness.util.retry` with
``cluster=`` and :class:`~harness.check.invariants.SafetyChecker` work unchanged.
A run is not reproducible: the seed drives the filters' randomness only.

Design
------
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
heartbeat.  The thread holds no reference to the cluster object, so a cluster
dropped without ``close()`` is collected and its finalizer (also run at
interpreter exit) stops the thread and releases everything.

*Channel models* match the simulation's, for the same reason: safety checks
must hold pysyncobj to its actual contract.

``fifo`` (default)
    A TCP stream cannot lose a message in the middle: a message dropped by a
    filter breaks its connection (the dropping side closes it, pysyncobj
    reconnects after ``reconnect_delay`` and its own ``connectionRetryTime``);
    messages delayed or held on a link keep everything behind them on that link
    in order; a message still delayed when its connection breaks is lost.  A
    partition or isolation closes the connections it cuts and refuses new ones
    (outgoing connects are not attempted, incoming ones are closed as soon as
    the peer names itself) until healed.  Duplicating or reordering filters
    are rejected, as in the simulated ``fifo`` model.
``unreliable``
    The Raft paper's network on top of TCP: filters drop, delay, reorder and
    duplicate single messages silently; connections stay up (pysyncobj's
    ``connectionTimeout`` may still drop a link that hears nothing).

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

import collections
import heapq
import itertools
import pickle
import random
import shutil
import tempfile
import threading
import time
import traceback
import weakref
from pathlib import Path
from typing import Any, Callable, Counter, Deque, Dict, List, Optional, Sequence, Tuple

from pysyncobj import SyncObjConf
from pysyncobj.node import TCPNode
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.transport import TCPTransport

from harness.sim import clock as _clock
from harness.adapter import observe as compat
from harness.contract import ClusterBase, NodeError
from harness.wire.filters import Filter, FilterContext, FilterFactory, run_chain
from harness.history import FAILED, OK, PENDING, READ, UNKNOWN, WRITE, History, Operation
from harness.kv import KVStore
from harness.wire.messages import Envelope, message_type
from harness.state import NodeState
from harness.util import alloc_port

__all__ = ["TcpCluster", "FilteredTCPTransport", "TcpNetwork", "NamedTCPNode", "HOST"]

HOST = "127.0.0.1"
#: NodeErrors kept per cluster; a node failing on every tick would otherwise grow the list 200 times a second.
MAX_NODE_ERRORS = 1000


class NamedTCPNode(TCPNode):
    """A ``TCPNode`` reached at ``host:port`` whose Raft identity is the harness name (``n1``, ``n2`` …).

    pysyncobj keys votes, leaders, next/match indexes and the journal's
    ``votedFor`` by ``Node.id``; the transport uses ``address``.  Naming nodes
    this way keeps :class:`~harness.state.NodeState` (and so every checker and
    report) identical in shape to the simulated cluster's.
    """

    def __init__(self, name: str, address: str) -> None:
        super().__init__(address)
        self._id = name


# --- the transport ------------------------------------------------------------------------------

class FilteredTCPTransport(TCPTransport):
    """pysyncobj's TCPTransport with the harness' filter chains on both sides of the socket."""

    def __init__(self, network: "TcpNetwork", node_id: str, syncObj, selfNode, otherNodes) -> None:
        self._net = network
        self.node_id = node_id
        self.alive = True
        self.epochs: Dict[str, int] = {}  # peer id -> id of the current connection (0: never connected)
        self.peers: Dict[str, TCPNode] = {n.id: n for n in otherNodes}
        self._incoming: List[Any] = []  # every accepted TcpConnection, so a crash can close them all
        super().__init__(syncObj, selfNode, otherNodes)

    # messages
    def send(self, node, message) -> bool:
        if not self.alive or node not in self._connections \
                or self._connections[node].state != CONNECTION_STATE.CONNECTED:
            return False
        return self._net.on_send(self, node, message)

    def raw_send(self, node, message) -> bool:
        """Put a message on the socket, past the filters."""
        return TCPTransport.send(self, node, message)

    def _onMessageReceived(self, node, message) -> None:
        if self.alive:
            self._net.on_receive(self, node, message)

    def raw_deliver(self, node, message) -> None:
        """Hand a received message to pysyncobj, past the filters."""
        TCPTransport._onMessageReceived(self, node, message)

    # connections
    def _onNodeConnected(self, node) -> None:
        self.epochs[node.id] = self._net.next_epoch()
        super()._onNodeConnected(node)

    def _onNodeDisconnected(self, node) -> None:
        self.epochs[node.id] = self._net.next_epoch()
        super()._onNodeDisconnected(node)

    def connected(self, peer_id: str) -> bool:
        node = self.peers.get(peer_id)
        conn = self._connections.get(node) if node is not None else None
        return conn is not None and conn.state == CONNECTION_STATE.CONNECTED

    def _connectIfNecessarySingle(self, node):
        if not self.alive or not self._net.may_connect(self.node_id, node.id):
            return False
        return super()._connectIfNecessarySingle(node)

    def _onNewIncomingConnection(self, conn) -> None:
        self._incoming = [c for c in self._incoming if c.state != CONNECTION_STATE.DISCONNECTED]
        self._incoming.append(conn)
        super()._onNewIncomingConnection(conn)

    def _onIncomingMessageReceived(self, conn, message) -> None:
        # The first message on an accepted connection names the peer: refuse it while the link is cut.
        if isinstance(message, str) and message in self._nodeAddrToNode:
            peer = self._nodeAddrToNode[message]
            if not self.alive or not self._net.may_connect(self.node_id, peer.id):
                self._unknownConnections.discard(conn)
                conn.disconnect()
                return
        super()._onIncomingMessageReceived(conn, message)

    def disconnect_peer(self, peer_id: str) -> bool:
        """Close the connection to ``peer_id`` (pysyncobj sees it drop and reconnects when allowed)."""
        node = self.peers.get(peer_id)
        conn = self._connections.get(node) if node is not None else None
        if conn is None or conn.state == CONNECTION_STATE.DISCONNECTED:
            return False
        conn.disconnect()
        return True

    def tryGetReady(self) -> None:
        # SyncObj.__init__ (autoTick=False) calls this in a busy loop until the port is bound;
        # pysyncobj only retries every bindRetryTime, so wait a little instead of spinning.
        super().tryGetReady()
        if not self._ready:
            time.sleep(0.01)

    def kill(self) -> None:
        """A crash: close every socket (server, outgoing, accepted) without telling pysyncobj."""
        self.alive = False
        self.destroy()  # unsets the callbacks first, then closes connections and the listening socket
        for conn in self._incoming:
            conn.disconnect()
        self._incoming = []


# --- filters, timers, counters ------------------------------------------------------------------

class TcpNetwork:
    """The filter chains and message timers of a :class:`TcpCluster`; what filters see as ``ctx.network``.

    Every method runs under the cluster lock (taken here when called from
    outside, e.g. by :meth:`HoldFilter.release <harness.wire.filters.HoldFilter.release>`).
    """

    def __init__(self, model: str, rng: random.Random, now: Callable[[], float], lock: threading.RLock,
                 record_error: Callable[[str, str, str], None], reconnect_delay: float,
                 recent: int = 64) -> None:
        self.model = model
        self._rng = rng
        self._now = now
        self._lock = lock
        self._record_error = record_error
        self._reconnect_delay = reconnect_delay
        self._send_chains: Dict[str, List[Filter]] = {}
        self._recv_chains: Dict[str, List[Filter]] = {}
        self.transports: Dict[str, FilteredTCPTransport] = {}  # live node id -> its transport
        self._timers: List[tuple] = []  # heap of (due, order, function, args)
        self._order = itertools.count()
        self._seq = 0
        self._epochs = itertools.count(1)
        self._pending: Counter[tuple] = collections.Counter()  # fifo: messages queued on (src, dst, side)
        self._last_due: Dict[tuple, float] = {}
        self._holdoff: Dict[Tuple[str, str], float] = {}  # fifo: no reconnect before this time
        self.stats: Counter[str] = collections.Counter()
        self.delivered_by: Counter[Tuple[str, str, str]] = collections.Counter()  # (src, dst, kind)
        self.dropped_by: Counter[Tuple[str, str, str]] = collections.Counter()
        self.recent: Deque[Tuple[float, Envelope]] = collections.deque(maxlen=recent)

    # nodes and filters
    def register(self, node_id: str) -> None:
        self._send_chains[node_id] = []
        self._recv_chains[node_id] = []

    def node_ids(self) -> List[str]:
        return sorted(self._send_chains)

    def node_up(self, node_id: str, transport: FilteredTCPTransport) -> None:
        self.transports[node_id] = transport

    def node_down(self, node_id: str) -> None:
        transport = self.transports.pop(node_id, None)
        if transport is not None:
            transport.kill()

    def next_epoch(self) -> int:
        return next(self._epochs)

    def add_filter(self, node_id: str, direction: str, f: Filter) -> None:
        if node_id not in self._send_chains:
            raise ValueError(f"node_id must be one of {self.node_ids()}, got {node_id!r}")
        if not isinstance(f, Filter):
            raise ValueError(f"filter must be a harness Filter, got {f!r}")
        if self.model == "fifo" and not f.fifo_ok:
            raise ValueError(f"{type(f).__name__} needs network='unreliable': the fifo model "
                             "(pysyncobj's TCP contract) never duplicates or reorders")
        with self._lock:
            f.bind(self)
            (self._send_chains if direction == "send" else self._recv_chains)[node_id].append(f)
            self.refresh_links()

    def clear_filters(self, node_id: Optional[str] = None) -> None:
        with self._lock:
            for nid in self.node_ids() if node_id is None else [node_id]:
                for f in self._send_chains[nid] + self._recv_chains[nid]:
                    for hold in f.holds():
                        hold.release()  # fifo: a held message cannot just vanish from a live stream
                self._send_chains[nid].clear()
                self._recv_chains[nid].clear()
            self.refresh_links()

    def filters(self, node_id: str) -> Tuple[List[Filter], List[Filter]]:
        return list(self._send_chains[node_id]), list(self._recv_chains[node_id])

    # connections
    def _cut(self, a: str, b: str) -> bool:
        mine = self._send_chains.get(a, []) + self._recv_chains.get(a, [])
        theirs = self._send_chains.get(b, []) + self._recv_chains.get(b, [])
        return any(f.cuts(a, b) for f in mine) or any(f.cuts(b, a) for f in theirs)

    def may_connect(self, a: str, b: str) -> bool:
        """fifo: no connection across a cut, nor before the hold-off after a reset has passed."""
        if self.model != "fifo":
            return True
        return not self._cut(a, b) and self._now() >= self._holdoff.get((min(a, b), max(a, b)), 0.0)

    def refresh_links(self) -> None:
        """fifo: close every connection a filter now cuts (pysyncobj reconnects once healed)."""
        if self.model != "fifo":
            return
        with self._lock:
            for a, transport in sorted(self.transports.items()):
                for b in sorted(transport.peers):
                    if self._cut(a, b) and transport.disconnect_peer(b):
                        self.stats["cuts"] += 1

    def _reset(self, owner: str, peer: str) -> None:
        """fifo: a lost message breaks its TCP connection; it may come back ``reconnect_delay`` later."""
        self._holdoff[(min(owner, peer), max(owner, peer))] = self._now() + self._reconnect_delay
        transport = self.transports.get(owner)
        if transport is not None and transport.disconnect_peer(peer):
            self.stats["resets"] += 1

    # messages
    def _envelope(self, src: str, dst: str, message: Any, epoch: int) -> Envelope:
        self._seq += 1
        return Envelope(seq=self._seq, src=src, dst=dst, kind=message_type(message),
                        payload=pickle.dumps(message, protocol=4), sent_at=self._now(), epoch=epoch)

    def copy_envelope(self, env: Envelope) -> Envelope:
        self._seq += 1
        return env.copy(self._seq)

    def _apply_chain(self, chain: Sequence[Filter], owner: str, direction: str,
                     batch: List[Envelope]) -> List[Envelope]:
        if not chain:
            return batch
        ctx = FilterContext(owner=owner, direction=direction, now=self._now(), rng=self._rng,
                            network_model=self.model, network=self)
        return run_chain(chain, batch, ctx, lambda e: self._removed(e, owner, ctx.peer(e)))

    def _removed(self, e: Envelope, owner: str, peer: str) -> None:
        if e.held is not None:
            self.stats["held"] += 1
            return
        self.stats["dropped"] += 1
        self.dropped_by[(e.src, e.dst, e.kind)] += 1
        if self.model == "fifo":
            self._reset(owner, peer)

    def on_send(self, transport: FilteredTCPTransport, node, message) -> bool:
        """``transport.send``: the send chain, then the socket now or when a delay runs out."""
        src, dst = transport.node_id, node.id
        env = self._envelope(src, dst, message, transport.epochs.get(dst, 0))
        self.stats["sent"] += 1
        out = self._apply_chain(self._send_chains[src], src, "send", [env])
        if self.model == "fifo" and transport.epochs.get(dst, 0) != env.epoch:
            return False  # a filter dropped it: the connection is gone
        ok = True
        for e in out:
            if e is env and e.delay <= 0 and not self._pending[(src, dst, "send")]:
                ok = transport.raw_send(node, message) and ok
            else:
                self._queue(e, "send")
        return ok

    def on_receive(self, transport: FilteredTCPTransport, node, message) -> None:
        """``transport._onMessageReceived``: the receive chain, then pysyncobj now or after a delay."""
        src, dst = node.id, transport.node_id
        env = self._envelope(src, dst, message, transport.epochs.get(src, 0))
        out = self._apply_chain(self._recv_chains[dst], dst, "recv", [env])
        for e in out:
            if e is env and e.delay <= 0 and not self._pending[(src, dst, "recv")]:
                self._deliver(transport, node, env, message)
            else:
                self._queue(e, "recv")

    def _queue(self, env: Envelope, side: str) -> None:
        """Deliver ``env`` later (``env.delay``, and in fifo behind everything queued on its link)."""
        link = (env.src, env.dst, side)
        due = self._now() + env.delay
        env.delay = 0.0
        if self.model == "fifo":
            due = max(due, self._last_due.get(link, 0.0))
            self._last_due[link] = due
            self._pending[link] += 1
        owner = env.src if side == "send" else env.dst
        self.stats["delayed"] += 1
        heapq.heappush(self._timers, (due, next(self._order), self._fire,
                                      (env, side, self.transports.get(owner))))

    def _fire(self, env: Envelope, side: str, transport: Optional[FilteredTCPTransport]) -> None:
        link = (env.src, env.dst, side)
        if self.model == "fifo":
            self._pending[link] -= 1
            if not self._pending[link]:
                del self._pending[link]
        owner, peer = (env.src, env.dst) if side == "send" else (env.dst, env.src)
        if transport is None or not transport.alive or self.transports.get(owner) is not transport:
            self.stats["lost"] += 1  # its node crashed meanwhile
            return
        if self.model == "fifo" and transport.epochs.get(peer, 0) != env.epoch:
            self.stats["lost"] += 1  # the connection it travelled on broke meanwhile
            return
        node = transport.peers[peer]
        if side == "send":
            if not transport.raw_send(node, pickle.loads(env.payload)):
                self.stats["lost"] += 1
        else:
            self._deliver(transport, node, env, pickle.loads(env.payload))

    def _deliver(self, transport: FilteredTCPTransport, node, env: Envelope, message: Any) -> None:
        self.stats["delivered"] += 1
        self.delivered_by[(env.src, env.dst, env.kind)] += 1
        self.recent.append((self._now(), env))
        try:
            transport.raw_deliver(node, message)
        except Exception:
            self._record_error(env.dst, f"handling {env.kind} from {env.src}", traceback.format_exc())

    def inject(self, envelopes: Sequence[Envelope]) -> None:
        """Messages a HoldFilter released, in order: send-side ones go to the socket (then through
        the receiver's filters), receive-side ones to pysyncobj; by the harness thread, at once."""
        with self._lock:
            for env in envelopes:
                side = "send" if env.held == "send" else "recv"
                env.held = None
                env.delay = 0.0
                self._queue(env, side)
            self.stats["released"] += len(envelopes)

    def run_timers(self) -> None:
        now = self._now()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn, args = heapq.heappop(self._timers)
            fn(*args)


# --- the cluster --------------------------------------------------------------------------------

class _Slot:
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


class _Core:
    """What the harness thread and the clean-up need, with no reference back to the TcpCluster.

    So a cluster dropped without :meth:`TcpCluster.close` is still collected,
    and its finalizer (also run at interpreter exit) stops the thread, closes
    every socket and file and removes the temp dir.
    """

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self.t0 = time.monotonic()
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.slots: Dict[str, _Slot] = {}
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

    def kill(self, slot: _Slot) -> None:
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

    def _tick(self, slot: _Slot) -> None:
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
        core = self._core = _Core(poll_interval)
        self._lock = core.lock
        self._slots = core.slots
        self.node_errors: List[NodeError] = core.node_errors
        self._net = core.net = TcpNetwork(network, self._network_rng(seed), core.now, core.lock,
                                          core.record_error, reconnect_delay)
        self._finalizer = weakref.finalize(self, core.shutdown)
        try:
            core.root = Path(tempfile.mkdtemp(prefix="raft-harness-tcp-"))
            for i in range(1, nodes + 1):
                node_id = f"n{i}"
                directory = core.root / node_id
                directory.mkdir()
                self._slots[node_id] = _Slot(node_id, directory, alloc_port(HOST))
                self._net.register(node_id)
            for node_id in self.node_ids:
                self._start(self._slots[node_id])
            core.thread = threading.Thread(target=core.run, name=f"raft-harness-tcp-{seed}", daemon=True)
            core.thread.start()
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
        return self._core.closed

    @property
    def root(self) -> Optional[Path]:
        """The temp dir holding every node's journal and dump (removed by :meth:`close`)."""
        return self._core.root

    def _node_ref(self, node_id: str) -> NamedTCPNode:
        return NamedTCPNode(node_id, self._slots[node_id].address)

    def _start(self, slot: _Slot) -> None:
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
            self._core.record_error(slot.id, "starting", tb)
            raise
        compat.watch_journal(obj)
        with self._lock:
            slot.obj = obj
            net.node_up(slot.id, built[0])
        self._core.wake.set()

    def _check_running(self) -> None:
        core = self._core
        if core.closed:
            raise RuntimeError("this TcpCluster is closed")
        if core.loop_error is not None:
            raise RuntimeError(f"the TcpCluster harness thread died:\n{core.loop_error}")
        if core.clock_conflict:
            raise RuntimeError("a simulated harness.Cluster was opened while this TcpCluster runs; its "
                               "virtual clock replaced pysyncobj's, so ticking stopped")

    # --- time ------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """Wall seconds since the cluster started."""
        return self._core.now()

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

    def _slot(self, node_id: str, arg: str = "node_id") -> _Slot:
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

    def node(self, node_id: str):
        """The live SyncObj of ``node_id`` (None while crashed); touch it only under :meth:`locked`."""
        return self._slot(node_id).obj

    def locked(self):
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
        """The up node in leader role with the highest term, or None."""
        with self._lock:
            best = None
            for node_id in self.up_ids():
                obj = self._slots[node_id].obj
                if compat.role(obj) == "leader" and (best is None or obj.raftCurrentTerm > best[0]):
                    best = (obj.raftCurrentTerm, node_id)
            return None if best is None else best[1]

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
        self._slot(a)
        self._slot(b, "b")
        with self._lock:
            transport = self._net.transports.get(a)
            return transport is not None and transport.connected(b)

    @property
    def stats(self) -> Dict[str, int]:
        """Counters: ticks, crashes, restarts, snapshots_forced; sent, delivered, dropped, held,
        released, delayed, lost (delayed past a broken connection or a crash), resets, cuts."""
        with self._lock:
            return {**self._core.counters, **self._net.stats}

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
        history, now, settle = self.history, self._core.now, self._settle  # the callback must not hold the cluster
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
                self._core.record_error(via, f"client {kind}", traceback.format_exc())
        self._core.wake.set()
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
        self._core.wake.set()

    def clear_filters(self, node_id: str) -> None:
        self._slot(node_id)
        self._net.clear_filters(node_id)
        self._core.wake.set()

    def crash(self, node_id: str) -> None:
        """Kill ``node_id`` without any shutdown: sockets closed, memory lost, journal and dump files kept."""
        slot = self._slot(node_id)
        with self._lock:
            if slot.obj is None:
                raise ValueError(f"node_id {node_id!r} is already crashed")
            self._core.kill(slot)
            self._core.counters["crashes"] += 1
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
        self._core.counters["restarts"] += 1

    def force_snapshot(self, node_id: str) -> None:
        """Ask ``node_id`` to compact its log now (the dump is written on its next ticks)."""
        slot = self._slot(node_id)
        with self._lock:
            if slot.obj is None:
                raise ValueError(f"node_id {node_id!r} is crashed; restart it first")
            slot.obj.forceLogCompaction()
            self._core.counters["snapshots_forced"] += 1
        self._core.wake.set()
