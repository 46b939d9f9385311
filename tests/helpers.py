"""Small shared helpers for the harness core tests (not tests themselves)."""
from __future__ import annotations

import itertools
import pickle
import random
from typing import Callable, Dict, List, Optional, Tuple

from harness.adapter import observe as compat
from harness.wire.filters import Filter, FilterContext, Wiring
from harness.wire.messages import Envelope

_seq = itertools.count(1)


def make_env(src: str = "n1", dst: str = "n2", kind: str = "append_entries", seq: Optional[int] = None,
             sent_at: float = 0.0, **message) -> Envelope:
    """A hand-built envelope carrying a pysyncobj-shaped message of type ``kind``."""
    msg = {"type": "append_entries" if kind == "snapshot" else kind, "term": 1}
    if kind == "snapshot":
        msg["serialized"] = (b"chunk", True, True)
    msg.update(message)
    return Envelope(seq=next(_seq) if seq is None else seq, src=src, dst=dst, kind=kind,
                    payload=pickle.dumps(msg, protocol=4), sent_at=sent_at)


def make_batch(n: int, src: str = "n1", dst: str = "n2", kind: str = "append_entries") -> List[Envelope]:
    return [make_env(src, dst, kind) for _ in range(n)]


def make_ctx(seed: int = 0, owner: str = "n1", direction: str = "send", network=None,
             model: str = "unreliable", now: float = 0.0) -> FilterContext:
    """A FilterContext with its own seeded generator, as the network would build one."""
    return FilterContext(owner=owner, direction=direction, now=now, rng=random.Random(seed),
                         network_model=model, copy=(network or FakeNetwork()).copy_envelope)


class FakeNetwork:
    """Just enough of SimNetwork for DuplicateFilter (copies) and HoldFilter (inject)."""

    def __init__(self) -> None:
        self.injected: List[Envelope] = []
        self._next = 10_000

    def copy_envelope(self, env: Envelope) -> Envelope:
        self._next += 1
        return Envelope(seq=self._next, src=env.src, dst=env.dst, kind=env.kind, payload=env.payload,
                        sent_at=env.sent_at, delay=env.delay, epoch=env.epoch)

    def inject(self, envelopes) -> None:
        self.injected.extend(envelopes)

    def wiring(self) -> Wiring:
        """What installing a filter on a node hands it."""
        return Wiring(inject=self.inject, links_changed=lambda: None)


class Recorder(Filter):
    """Keeps every message and records ``(ctx.now, envelope)``: an observation point in a chain.

    On a receive chain ``ctx.now`` is the arrival time (before any receive-side delay).
    """

    def __init__(self, where: Optional[Callable[[Envelope], bool]] = None) -> None:
        self.where = where
        self.seen: List[Tuple[float, Envelope]] = []

    def filter(self, batch, ctx):
        for e in batch:
            if self.where is None or self.where(e):
                self.seen.append((ctx.now, e))
        return batch

    @property
    def envelopes(self) -> List[Envelope]:
        return [e for _, e in self.seen]

    def kinds(self) -> List[str]:
        return [e.kind for _, e in self.seen]


def record_all_recv(cluster, where=None) -> Dict[str, Recorder]:
    """Put a :class:`Recorder` on every node's receive chain; returns them by node id."""
    recs = {}
    for node_id in cluster.node_ids:
        recs[node_id] = Recorder(where)
        cluster.add_recv_filter(node_id, recs[node_id])
    return recs


def others(cluster, node_id: str) -> List[str]:
    return [n for n in cluster.node_ids if n != node_id]


def roles_during(cluster, node_ids, seconds: float) -> Dict[str, set]:
    """Run ``seconds`` of virtual time and collect every role each node had after every event."""
    seen: Dict[str, set] = {n: set() for n in node_ids}

    def look() -> bool:
        for n in node_ids:
            obj = cluster.node(n)
            if obj is not None:
                seen[n].add(compat.role(obj))
        return False

    look()
    cluster.run_until(look, seconds)
    return seen


def per_link_inversions(envelopes) -> int:
    """How many envelopes arrived after one with a higher seq on the same (src, dst) link."""
    highest: Dict[Tuple[str, str], int] = {}
    inversions = 0
    for e in envelopes:
        link = (e.src, e.dst)
        if e.seq < highest.get(link, 0):
            inversions += 1
        highest[link] = max(highest.get(link, 0), e.seq)
    return inversions
