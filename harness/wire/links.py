"""Filters that act on single links, and the partition shapes built from them.

A filter in a node's chain sees every message the node sends (or receives).  Real faults are often
narrower: one slow route, one lossy cable, one direction of one connection, a ring of switches
where each node still reaches its neighbours.  :class:`LinkFilter` narrows any filter to the link
with one peer; :class:`OneWayCut` loses one direction; :class:`VisibilityFilterFactory` builds
Jepsen's partition shapes (ring, majorities ring) from who-sees-whom.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Sequence

from harness.wire.filters import Filter, FilterContext, FilterFactory, HoldFilter, PartitionFilter, Wiring
from harness.wire.messages import Envelope


class LinkFilter(Filter):
    """Applies ``inner`` only to the messages exchanged with ``peer``; the owner's other links are untouched.

    In a send chain that is the directed link owner→peer, in a receive chain peer→owner.  On
    ``fifo`` the usual rules follow from the inner filter: a delay keeps the link's order (a slow
    path), a drop breaks the connection, a hold stalls the link behind the held message.
    """

    def __init__(self, peer: str, inner: Filter) -> None:
        if not isinstance(inner, Filter):
            raise ValueError(f"inner must be a harness Filter, got {inner!r}")
        self.peer = peer
        self.inner = inner
        self.fifo_ok = inner.fifo_ok

    def bind(self, wiring: Wiring) -> None:
        super().bind(wiring)
        self.inner.bind(wiring)

    def holds(self) -> List[HoldFilter]:
        return self.inner.holds()

    def filter(self, batch: List[Envelope], ctx: FilterContext) -> List[Envelope]:
        on_link = [e for e in batch if ctx.peer(e) == self.peer]
        if not on_link:
            return batch
        return [e for e in batch if ctx.peer(e) != self.peer] + self.inner.filter(on_link, ctx)

    def cuts(self, owner: str, peer: str) -> bool:
        return peer == self.peer and self.inner.cuts(owner, peer)


class OneWayCut(Filter):
    """In a send chain: every message from the owner to ``peers`` is lost; the other direction flows.

    That pure asymmetry exists on ``unreliable``.  On ``fifo`` (TCP) it cannot last: the lost
    messages break the connection (the fifo rule for any lost message), and no new connection can
    be made while the cut holds, because a TCP handshake needs both directions.  So on ``fifo`` the
    connections to ``peers`` are down for as long as the cut is installed, and what was in flight
    on them in either direction is lost.  (The moments before a real TCP stack notices, when one
    direction stalls and the other still flows, are a :class:`LinkFilter` around a
    :class:`~harness.wire.filters.HoldFilter` followed by the cut.)
    """

    def __init__(self, peers: Iterable[str]) -> None:
        self.peers = frozenset(peers)

    def filter(self, batch: List[Envelope], ctx: FilterContext) -> List[Envelope]:
        return [e for e in batch if ctx.peer(e) not in self.peers]

    def cuts(self, owner: str, peer: str) -> bool:
        return peer in self.peers and self._wiring is not None and self._wiring.model == "fifo"


def ring_visibility(order: Sequence[str], reach: int) -> Dict[str, frozenset]:
    """Who each node of the ring ``order`` still sees: itself and the ``reach`` nearest on either side."""
    n = len(order)
    return {node: frozenset(order[(i + d) % n] for d in range(-reach, reach + 1)) for i, node in enumerate(order)}


def majorities_reach(n: int) -> int:
    """The smallest ring reach at which every one of ``n`` nodes sees a majority (itself included)."""
    majority = n // 2 + 1
    return majority // 2


class VisibilityFilterFactory(FilterFactory):
    """A partition given as who sees whom: each listed node is cut off from the listed nodes it does
    not see.  The relation must be symmetric (a partition cuts both ways); unlisted nodes (e.g. ones
    added later) are cut off from no one."""

    def __init__(self, visible: Mapping[str, Iterable[str]]) -> None:
        self.visible = {node: frozenset(seen) | {node} for node, seen in visible.items()}
        for a, seen in self.visible.items():
            for b in seen:
                if b in self.visible and a not in self.visible[b]:
                    raise ValueError(f"visible must be symmetric: {a} sees {b} but {b} does not see {a}")

    def generate(self, node_id: str, all_nodes: Sequence[str]) -> List[Filter]:
        seen = self.visible.get(node_id)
        if seen is None:
            return []
        hidden = frozenset(self.visible) - seen
        return [PartitionFilter(hidden)] if hidden else []
