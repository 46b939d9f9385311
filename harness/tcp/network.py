"""The filter chains, message timers and counters of a :class:`~harness.tcp.TcpCluster`.

Over TCP the sockets deliver messages, not the harness; what remains of the
simulated network is the part that decides a message's fate.  Every message a
:class:`~harness.tcp.transport.FilteredTCPTransport` sends or receives passes
its node's filter chain here; a delayed or released one waits on a timer heap
that the harness thread runs (:meth:`TcpNetwork.run_timers`); counters say
what happened to each.  Filters reach it only through ``ctx.copy`` and the
:class:`~harness.wire.filters.Wiring` it hands them when installed.

The channel models match the simulation's (:mod:`harness.sim.network`), for
the same reason: safety checks must hold pysyncobj to its actual contract.

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
"""
from __future__ import annotations

import collections
import heapq
import itertools
import pickle
import random
import threading
import traceback
from typing import Any, Callable, Counter, Deque, Dict, List, Optional, Sequence, Tuple

from pysyncobj.node import TCPNode

from harness.tcp.transport import FilteredTCPTransport
from harness.wire.filters import Filter, FilterContext, Wiring, run_chain
from harness.wire.messages import Envelope, message_type

__all__ = ["TcpNetwork"]


class TcpNetwork:
    """The filter chains and message timers of a :class:`~harness.tcp.TcpCluster`.

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
            f.bind(Wiring(inject=self.inject, links_changed=self.refresh_links, model=self.model))
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
                            network_model=self.model, copy=self.copy_envelope)
        return run_chain(chain, batch, ctx, lambda e: self._removed(e, owner, ctx.peer(e)))

    def _removed(self, e: Envelope, owner: str, peer: str) -> None:
        if e.held is not None:
            self.stats["held"] += 1
            return
        self.stats["dropped"] += 1
        self.dropped_by[(e.src, e.dst, e.kind)] += 1
        if self.model == "fifo":
            self._reset(owner, peer)

    def on_send(self, transport: FilteredTCPTransport, node: TCPNode, message: Any) -> bool:
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

    def on_receive(self, transport: FilteredTCPTransport, node: TCPNode, message: Any) -> None:
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
