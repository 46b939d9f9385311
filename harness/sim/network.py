"""The simulated network between pysyncobj nodes: links, channel models, filter chains.

Two channel models, chosen per cluster:

``fifo``
    What pysyncobj's TCP transport promises.  Each pair of nodes shares one
    connection; messages on it arrive in order, never twice.  A connection is
    cut by a partition, a crash, or a filter dropping one of its messages (a
    TCP stream cannot lose a message in the middle): both ends get pysyncobj's
    disconnected callback, everything in flight on it is lost, and it comes
    back ``reconnect_delay`` later if nothing still cuts it.
``unreliable``
    The Raft paper's network: every message may be lost, delayed, reordered
    or duplicated independently; connections never drop.

``fifo`` with ``old_connections_readable`` (off by default)
    Closer to real sockets, between two voters.  What a sender had put on the
    wire stays readable by the receiving incarnation after the connection
    closes (the peer died, was cut off, or reset): the sender's kernel still
    sends it, before its FIN.  Of two voters the one with the greater address
    connects (pysyncobj's ``_shouldConnect``); the other accepts, and when a
    new connection from the same node arrives it installs it while it still
    reads the old socket (``TCPTransport._onIncomingMessageReceived``).  So
    what the connecting node sent on an old connection, or in a dead
    incarnation, may arrive after what it sends on the new one; order is kept
    per connection.  The connecting node only reconnects after closing its old
    socket, so what it receives stays in order across connections.  What was
    still in the sender's buffer (its outbox, a send-side hold) is lost with
    the connection, and nothing is delivered to a later incarnation of the
    receiver or after it dropped the sender from its membership.  pysyncobj
    handles a message the same whether or not it believes the sender
    connected, so the receiver being told of the close before it reads the
    last old bytes changes nothing it can act on.  Links with a read-only node
    keep the plain fifo rule: pysyncobj gives every read-only connection a
    node identity of its own, which the simulation's fixed ids cannot show.

Each node has a send chain and a receive chain of :mod:`~harness.wire.filters`.
A paused node (a process under SIGSTOP) reads nothing: what arrives for it,
messages and connection events alike, waits in its backlog, in order, until
it resumes; on ``fifo`` a message of a connection that closed meanwhile is
lost then (pysyncobj discards what it reads together with the end of the stream).
"""
from __future__ import annotations

import collections
import functools
import hashlib
import math
import pickle
import random
import zlib
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from pysyncobj.node import Node
from pysyncobj.transport import Transport

from harness.contract import NETWORK_MODELS
from harness.sim.events import EventQueue
from harness.wire.filters import Filter, FilterContext, Wiring, run_chain
from harness.wire.messages import Envelope, message_type


class SimNode(Node):
    """A pysyncobj node id whose hash does not depend on PYTHONHASHSEED.

    pysyncobj keeps peers in sets; with string hashing randomised per process,
    the order it sends in (and so the whole run) would differ between runs.
    """

    def __hash__(self) -> int:  # pysyncobj hashes nodes on every message: the id's crc32, computed once
        try:
            return _HASHES[self._id]
        except KeyError:
            h = _HASHES[self._id] = zlib.crc32(self._id.encode())
            return h

    def __eq__(self, other: object) -> bool:  # Node's, without its property lookups
        return isinstance(other, Node) and self._id == other.id


_HASHES: Dict[str, int] = {}


class SimTransport(Transport):
    """A pysyncobj transport that hands every message to the :class:`SimNetwork`."""

    def __init__(self, network: "SimNetwork", node_id: str, syncObj, selfNode, otherNodes) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self._network = network
        self._node_id = node_id
        self.known = {n.id for n in otherNodes}

    @property
    def ready(self) -> bool:
        return True

    def tryGetReady(self) -> None:
        pass

    def waitReady(self) -> None:
        pass

    def addNode(self, node) -> None:
        self.known.add(node.id)
        self._network.refresh_links()

    def dropNode(self, node) -> None:
        self.known.discard(node.id)
        self._network.refresh_links()

    def send(self, node, message) -> bool:
        return self._network.send(self._node_id, node.id, message)

    def destroy(self) -> None:
        pass


class _Endpoint:
    def __init__(self, node_id: str, voter: bool) -> None:
        self.id = node_id
        self.voter = voter
        self.transport: Optional[SimTransport] = None
        self.send_chain: List[Filter] = []
        self.recv_chain: List[Filter] = []
        self.outbox: List[Envelope] = []
        self.life = 0  # incarnations built so far

    @property
    def up(self) -> bool:
        return self.transport is not None


class _Link:
    """One connection between two nodes (an unordered pair)."""

    def __init__(self) -> None:
        self.connected = False
        self.epoch = 0
        self.connect_scheduled = False


#: (node id, what it was doing, thunk) -> runs pysyncobj code for that node, capturing exceptions.
Runner = Callable[[str, str, Callable[[], None]], None]


class SimNetwork:
    def __init__(self, model: str, events: EventQueue, clock, rng: random.Random,
                 latency: Tuple[float, float], reconnect_delay: float, run_on: Runner,
                 on_delivered: Callable[[str], None], recent: int = 64,
                 old_connections_readable: bool = False) -> None:
        if model not in NETWORK_MODELS:
            raise ValueError(f"network must be one of {list(NETWORK_MODELS)}, got {model!r}")
        try:
            lo, hi = (float(x) for x in latency)
            valid = math.isfinite(hi) and 0 <= lo <= hi
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(f"latency must be (min, max) with 0 <= min <= max virtual seconds, got {latency!r}")
        if not isinstance(reconnect_delay, (int, float)) or not math.isfinite(reconnect_delay) \
                or reconnect_delay < 0:
            raise ValueError(f"reconnect_delay must be >= 0 virtual seconds, got {reconnect_delay!r}")
        if not isinstance(old_connections_readable, bool) or (old_connections_readable and model != "fifo"):
            raise ValueError(f"old_connections_readable must be a bool, and True only with network='fifo' "
                             f"(connections exist only there), got {old_connections_readable!r} with {model!r}")
        self.model = model
        self.old_connections_readable = old_connections_readable
        self._events = events
        self._clock = clock
        self._rng = rng
        self._latency = (float(lo), float(hi))
        self._reconnect_delay = float(reconnect_delay)
        self._run_on = run_on
        self._on_delivered = on_delivered
        self._endpoints: Dict[str, _Endpoint] = {}
        self._links: Dict[Tuple[str, str], _Link] = {}
        self._views: Dict[Tuple[str, str], bool] = {}  # (a, b): a's pysyncobj thinks b is connected
        self._last_arrival: Dict[Tuple[str, str], float] = {}
        self._last_delivery: Dict[Tuple[str, str], float] = {}
        self._seq = 0
        self._trace = hashlib.sha256()
        self.delivered = 0
        self.dropped = 0
        self.recent: Deque[Tuple[float, Envelope]] = collections.deque(maxlen=recent)
        self.log: Optional[List[Dict[str, Any]]] = None  # every delivery, when a recorder wants them
        self.delivering: Optional[Envelope] = None  # the message being handled (and the tick right after it)
        self._paused: Dict[str, List[Callable[[], None]]] = {}  # node -> what it has not read yet

    # --- nodes -----------------------------------------------------------------------------
    def register(self, node_id: str, voter: bool) -> None:
        self._endpoints[node_id] = _Endpoint(node_id, voter)

    def node_ids(self) -> List[str]:
        return sorted(self._endpoints)

    def transport_factory(self, node_id: str):
        """The ``transportClass`` argument for the pysyncobj node ``node_id``."""

        def build(syncObj, selfNode, otherNodes):
            transport = SimTransport(self, node_id, syncObj, selfNode, otherNodes)
            ep = self._endpoints[node_id]
            ep.transport = transport
            ep.life += 1
            return transport

        return build

    def node_up(self, node_id: str) -> None:
        """The node's new incarnation is built: connect it (after the usual delay)."""
        self.refresh_links()

    def node_down(self, node_id: str) -> None:
        """The node crashed: its connections drop, its outbox and in-flight messages are lost."""
        ep = self._endpoints[node_id]
        ep.outbox.clear()
        ep.transport = None
        self._paused.pop(node_id, None)  # its socket buffers die with it
        for key in sorted(self._links):
            if node_id in key and self._links[key].connected:
                self._disconnect(key)
        for key in list(self._views):
            if key[0] == node_id:
                del self._views[key]

    def forget(self, node_id: str) -> None:
        """A removed node leaves the cluster for good."""
        if self._endpoints[node_id].up:
            self.node_down(node_id)
        del self._endpoints[node_id]
        for key in [k for k in self._links if node_id in k]:
            del self._links[key]  # a pending reconnect finds no link and does nothing
        self.refresh_links()

    # --- filters ---------------------------------------------------------------------------
    def add_filter(self, node_id: str, direction: str, f: Filter) -> None:
        ep = self._endpoint(node_id, "node_id")
        if not isinstance(f, Filter):
            raise ValueError(f"filter must be a harness Filter, got {f!r}")
        if self.model == "fifo" and not f.fifo_ok:
            raise ValueError(f"{type(f).__name__} needs network='unreliable': the fifo model "
                             "(pysyncobj's TCP contract) never duplicates or reorders")
        f.bind(Wiring(inject=self.inject, links_changed=self.refresh_links, model=self.model))
        (ep.send_chain if direction == "send" else ep.recv_chain).append(f)
        self.refresh_links()

    def clear_filters(self, node_id: Optional[str] = None) -> None:
        targets = self.node_ids() if node_id is None else [self._endpoint(node_id, "node_id").id]
        for nid in targets:
            ep = self._endpoints[nid]
            for f in ep.send_chain + ep.recv_chain:
                for hold in f.holds():
                    hold.release()  # fifo: a held message cannot just vanish from a live TCP stream
            ep.send_chain.clear()
            ep.recv_chain.clear()
        self.refresh_links()

    def filters(self, node_id: str) -> Tuple[List[Filter], List[Filter]]:
        ep = self._endpoint(node_id, "node_id")
        return list(ep.send_chain), list(ep.recv_chain)

    def _endpoint(self, node_id: str, arg: str) -> _Endpoint:
        ep = self._endpoints.get(node_id)
        if ep is None:
            raise ValueError(f"{arg} must be one of {self.node_ids()}, got {node_id!r}")
        return ep

    # --- connections -----------------------------------------------------------------------
    def _wanted(self, a: str, b: str) -> bool:
        ea, eb = self._endpoints[a], self._endpoints[b]
        if not (ea.up and eb.up):
            return False
        if ea.voter and eb.voter:
            return b in ea.transport.known and a in eb.transport.known
        if ea.voter and not eb.voter:
            return a in eb.transport.known
        if eb.voter and not ea.voter:
            return b in ea.transport.known
        return False

    def _cut(self, a: str, b: str) -> bool:
        ea, eb = self._endpoints[a], self._endpoints[b]
        return (any(f.cuts(a, b) for f in ea.send_chain + ea.recv_chain)
                or any(f.cuts(b, a) for f in eb.send_chain + eb.recv_chain))

    def _can_connect(self, key: Tuple[str, str]) -> bool:
        a, b = key
        return self._wanted(a, b) and not (self.model == "fifo" and self._cut(a, b))

    def refresh_links(self) -> None:
        """Bring every connection in line with membership, crashes and cutting filters."""
        ids = self.node_ids()
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                key = (a, b)
                link = self._links.setdefault(key, _Link())
                if link.connected and not self._can_connect(key):
                    self._disconnect(key)
                elif link.connected:
                    self._announce(key)  # a restarted node learns of links that stayed up
                if not link.connected and not link.connect_scheduled and self._can_connect(key):
                    link.connect_scheduled = True
                    self._events.at(self._clock.now() + self._reconnect_delay, self._connect, key)

    def _connect(self, key: Tuple[str, str]) -> None:
        link = self._links.get(key)
        if link is None:
            return
        link.connect_scheduled = False
        if link.connected or not self._can_connect(key):
            return
        link.connected = True
        link.epoch += 1
        self._announce(key)

    def _announce(self, key: Tuple[str, str]) -> None:
        a, b = key
        for me, peer in ((a, b), (b, a)):
            if not self._views.get((me, peer)):
                self._views[(me, peer)] = True
                self._notify(me, peer, connected=True)

    def _disconnect(self, key: Tuple[str, str]) -> None:
        link = self._links[key]
        link.connected = False
        link.epoch += 1
        a, b = key
        for me, peer in ((a, b), (b, a)):
            if self._views.pop((me, peer), False):
                self._notify(me, peer, connected=False)

    def _notify(self, me: str, peer: str, connected: bool) -> None:
        if self._paused and self.defer(me, functools.partial(self._notify, me, peer, connected)):
            return
        ep, peer_ep = self._endpoints.get(me), self._endpoints.get(peer)
        if ep is None or not ep.up or peer_ep is None:  # peer_ep None: forgotten while ``me`` was paused
            return
        transport = ep.transport
        peer_is_readonly = not peer_ep.voter
        if peer_is_readonly:
            fire = transport._onReadonlyNodeConnected if connected else transport._onReadonlyNodeDisconnected
        else:
            fire = transport._onNodeConnected if connected else transport._onNodeDisconnected
        what = "connected" if connected else "disconnected"
        self._run_on(me, f"{what} {peer}", lambda: fire(SimNode(peer)))

    def _reset(self, src: str, dst: str, epoch: Optional[int] = None) -> None:
        """fifo: a lost message breaks its TCP connection, which comes back after the usual delay.
        With ``epoch`` (old connections readable), only if the message was on the current connection."""
        key = (min(src, dst), max(src, dst))
        link = self._links.get(key)
        if link and link.connected and (epoch is None or epoch == link.epoch):
            self._disconnect(key)
            self.refresh_links()

    def connected(self, a: str, b: str) -> bool:
        return bool(self._views.get((a, b)))

    # --- paused nodes ------------------------------------------------------------------------
    def pause(self, node_id: str) -> None:
        """``node_id`` stops reading: from now on what arrives for it waits in its backlog."""
        self._paused.setdefault(node_id, [])

    def is_paused(self, node_id: str) -> bool:
        return node_id in self._paused

    def defer(self, node_id: str, thunk: Callable[[], None]) -> bool:
        """If ``node_id`` is paused, queue ``thunk`` (something it would read) and return True."""
        backlog = self._paused.get(node_id)
        if backlog is None:
            return False
        backlog.append(thunk)
        return True

    def resume(self, node_id: str) -> List[Callable[[], None]]:
        """``node_id`` reads again: its backlog, in arrival order, for the caller to run."""
        return self._paused.pop(node_id, [])

    # --- messages --------------------------------------------------------------------------
    def send(self, src: str, dst: str, message: dict) -> bool:
        """Called by pysyncobj through :class:`SimTransport`; False means "not connected"."""
        if not self._views.get((src, dst)):
            return False
        key = (min(src, dst), max(src, dst))
        self._seq += 1
        env = Envelope(seq=self._seq, src=src, dst=dst, kind=message_type(message),
                       payload=pickle.dumps(message, protocol=4), sent_at=self._clock.now(),
                       epoch=self._links[key].epoch, receiver_life=self._endpoints[dst].life)
        self._endpoints[src].outbox.append(env)
        return True

    def copy_envelope(self, env: Envelope) -> Envelope:
        self._seq += 1
        return env.copy(self._seq)

    def _apply_chain(self, chain: Sequence[Filter], owner: str, direction: str,
                     batch: List[Envelope]) -> List[Envelope]:
        if not chain:
            return batch
        ctx = FilterContext(owner=owner, direction=direction, now=self._clock.now(), rng=self._rng,
                            network_model=self.model, copy=self.copy_envelope)
        return run_chain(chain, batch, ctx, self._removed)

    def _removed(self, e: Envelope) -> None:
        if e.held is None:
            self.dropped += 1
            if self.model == "fifo":
                self._reset(e.src, e.dst, e.epoch if self.old_connections_readable else None)

    def flush(self, src: str) -> None:
        """Push what ``src`` sent during its last activation through its send chain."""
        ep = self._endpoints.get(src)
        if ep is None or not ep.outbox:
            return
        batch, ep.outbox = ep.outbox, []
        self._transmit(self._apply_chain(ep.send_chain, src, "send", batch))

    def _transmit(self, batch: List[Envelope]) -> None:
        """Put envelopes that passed their sender's filters on the wire."""
        lo, hi = self._latency
        now = self._clock.now()
        for env in batch:
            if self.old_connections_readable and not self._on_current_connection(env):
                continue  # still in the sender's buffer when its connection closed: lost with it
            at = now + self._rng.uniform(lo, hi) + env.delay
            env.delay = 0.0
            if self.model == "fifo":
                stream = self._stream(env)
                at = max(at, self._last_arrival.get(stream, 0.0))
                self._last_arrival[stream] = at
            self._events.at(at, self._arrive, env)

    def _stream(self, env: Envelope) -> tuple:
        """What fifo keeps in order: the directed link, or each connection on it when old connections
        of the connecting node stay readable by the accepting one."""
        if self.old_connections_readable and env.src > env.dst and self._between_voters(env):
            return env.src, env.dst, env.epoch
        return env.src, env.dst

    def _between_voters(self, env: Envelope) -> bool:
        src, dst = self._endpoints.get(env.src), self._endpoints.get(env.dst)
        return src is not None and dst is not None and src.voter and dst.voter

    def _on_current_connection(self, env: Envelope) -> bool:
        link = self._links.get((min(env.src, env.dst), max(env.src, env.dst)))
        return link is not None and link.connected and link.epoch == env.epoch

    def _alive(self, env: Envelope) -> bool:
        """Can ``env`` still be delivered: destination up, connection the one it was sent on."""
        dst = self._endpoints.get(env.dst)
        if self.old_connections_readable and self._between_voters(env):
            return dst.up and dst.life == env.receiver_life and env.src in dst.transport.known
        if dst is None or not dst.up or not self._views.get((env.dst, env.src)):
            return False
        if self.model == "fifo":
            return self._links[(min(env.src, env.dst), max(env.src, env.dst))].epoch == env.epoch
        return True

    def _arrive(self, env: Envelope) -> None:
        if not self._alive(env):
            return
        for e in self._apply_chain(self._endpoints[env.dst].recv_chain, env.dst, "recv", [env]):
            self._schedule_delivery(e, self._clock.now() + e.delay)
            e.delay = 0.0

    def _schedule_delivery(self, env: Envelope, at: float) -> None:
        if self.model == "fifo":
            stream = self._stream(env)
            at = max(at, self._last_delivery.get(stream, 0.0))
            self._last_delivery[stream] = at
        # Always an event, even when due now: a release() between steps must not run pysyncobj
        # code outside a cluster step (it would read the clock with no cluster active).
        self._events.at(at, self._deliver, env)

    def inject(self, envelopes: Sequence[Envelope]) -> None:
        """Messages a HoldFilter released, in order: send-side ones go on the wire (and through
        the receiver's filters), receive-side ones to delivery."""
        sent = [e for e in envelopes if e.held == "send"]
        received = [e for e in envelopes if e.held != "send"]
        for env in envelopes:
            env.held = None
        self._transmit(sent)
        for env in received:
            self._schedule_delivery(env, self._clock.now())

    def _deliver(self, env: Envelope) -> None:
        if self._paused and self.defer(env.dst, functools.partial(self._deliver, env)):
            return
        if not self._alive(env):
            return
        now = self._clock.now()
        src, dst = env.src, env.dst
        trace = self._trace.update
        trace(b"%r|%s|%s|%d|" % (now, src.encode(), dst.encode(), env.seq))
        trace(env.payload)
        self.delivered += 1
        self.recent.append((now, env))
        receive = self._endpoints[dst].transport._onMessageReceived
        message = pickle.loads(env.payload)
        if self.log is not None:
            self.log.append({"seq": env.seq, "src": src, "dst": dst, "kind": env.kind,
                             "sent": env.sent_at, "delivered": now, "term": message.get("term")})
        self.delivering = env
        self._run_on(dst, f"handling {env.kind} from {src}", functools.partial(receive, SimNode(src), message))
        self._on_delivered(dst)
        self.delivering = None

    def trace_digest(self) -> str:
        """Hash of every delivered message with its time, in delivery order."""
        return self._trace.hexdigest()
