"""Message filters, composed in a chain on a node's send or receive side.

The shape follows TiKV's ``transport_simulate``: each filter is a tiny object
that sees a batch of envelopes and returns the ones that go on.  A filter may
drop an envelope (leave it out), keep it, delay it (raise ``delay``), duplicate
it (return it twice), or hold it (keep it inside until :meth:`HoldFilter.release`).
Filters draw randomness only from ``ctx.rng``, the cluster's seeded generator.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Callable, Iterable, List, Optional, Sequence

from harness.util import check_seconds
from harness.wire.messages import MESSAGE_TYPES, Envelope


@dataclasses.dataclass
class FilterContext:
    """What a filter may know when it runs: where it sits, the time and the seeded generator."""

    owner: str  # node whose chain this is
    direction: str  # "send" or "recv"
    now: float
    rng: random.Random
    network_model: str
    copy: Callable[[Envelope], Envelope]  # a duplicate with its own sequence number (DuplicateFilter)

    def peer(self, env: Envelope) -> str:
        """The node at the other end of ``env`` from this chain's owner."""
        return env.dst if self.direction == "send" else env.src


@dataclasses.dataclass(frozen=True)
class Wiring:
    """The two things an installed filter may ask of its network, handed over as callables so that a
    filter never holds the network itself (TiKV's filters see only their batches)."""

    inject: Callable[[Sequence[Envelope]], None]  # let held envelopes go on (HoldFilter.release)
    links_changed: Callable[[], None]  # a cutting filter switched: connections must be recomputed
    model: str = "unreliable"  # the network's channel model: whether a lost message breaks its connection


def run_chain(chain: Sequence["Filter"], batch: List[Envelope], ctx: FilterContext,
              removed: Callable[[Envelope], None]) -> List[Envelope]:
    """Pass ``batch`` through ``chain`` in order; ``removed(e)`` for every envelope a filter took
    out (dropped, or held if ``e.held`` is set), so the network can count it and, on a TCP-like
    link, break the connection the lost message was on."""
    for f in chain:
        before = batch
        batch = f.filter(list(before), ctx)
        kept = {id(e) for e in batch}
        for e in before:
            if id(e) not in kept:
                removed(e)
    return batch


class Filter:
    """Base class. Subclasses override :meth:`filter`; ``cuts`` marks connection-level faults."""

    #: Filters that cannot exist on a TCP stream (``fifo`` model) set this to False.
    fifo_ok = True
    _wiring: Optional[Wiring] = None

    def bind(self, wiring: Wiring) -> None:
        """Called once when installed, with what the filter may ask of its network."""
        self._wiring = wiring

    def holds(self) -> List["HoldFilter"]:
        """The HoldFilters in this filter (itself, or wrapped), so a heal can release them."""
        return []

    def filter(self, batch: List[Envelope], ctx: FilterContext) -> List[Envelope]:
        raise NotImplementedError

    def cuts(self, owner: str, peer: str) -> bool:
        """True if this filter severs the connection ``owner``–``peer`` outright (a partition)."""
        return False

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def _check_rate(name: str, rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {rate!r}")
    return float(rate)


def _check_types(types: Iterable[str]) -> frozenset:
    if isinstance(types, str):
        types = [types]
    types = frozenset(types)
    unknown = sorted(types - MESSAGE_TYPES)
    if unknown or not types:
        raise ValueError(f"types must be a non-empty subset of {sorted(MESSAGE_TYPES)}, got {sorted(types)}")
    return types


class DropPacketFilter(Filter):
    """Drops each message with probability ``rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = _check_rate("rate", rate)

    def filter(self, batch, ctx):
        return [e for e in batch if ctx.rng.random() >= self.rate]


class DelayFilter(Filter):
    """Delays every message by ``seconds`` of virtual time (order on a link is kept in ``fifo``)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = check_seconds("seconds", seconds, "virtual seconds")

    def filter(self, batch, ctx):
        for e in batch:
            e.delay += self.seconds
        return batch


class PartitionFilter(Filter):
    """Cuts the owner off from ``nodes``: nothing passes to or from them."""

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes = frozenset(nodes)

    def filter(self, batch, ctx):
        return [e for e in batch if ctx.peer(e) not in self.nodes]

    def cuts(self, owner, peer):
        return peer in self.nodes


class MessageTypeFilter(Filter):
    """Drops every message whose type is in ``types`` (pysyncobj's types, or ``snapshot``)."""

    def __init__(self, types: Iterable[str]) -> None:
        self.types = _check_types(types)

    def filter(self, batch, ctx):
        return [e for e in batch if e.kind not in self.types]


class ConditionalFilter(Filter):
    """Applies ``inner`` only while switched on; lets a test flip a fault without reinstalling it."""

    def __init__(self, inner: Filter, enabled: bool = True) -> None:
        if not isinstance(inner, Filter):
            raise ValueError(f"inner must be a Filter, got {inner!r}")
        self.inner = inner
        self.enabled = bool(enabled)
        self.fifo_ok = inner.fifo_ok

    def bind(self, wiring: Wiring) -> None:
        super().bind(wiring)
        self.inner.bind(wiring)

    def holds(self):
        return self.inner.holds()

    def switch(self, enabled: bool) -> None:
        """Turn the inner filter on or off; a partition switched off lets its connections come back."""
        self.enabled = bool(enabled)
        if self._wiring is not None:
            self._wiring.links_changed()

    def filter(self, batch, ctx):
        return self.inner.filter(batch, ctx) if self.enabled else batch

    def cuts(self, owner, peer):
        return self.enabled and self.inner.cuts(owner, peer)


class CountFilter(Filter):
    """Lets the first ``n`` messages through, then blocks every later one."""

    def __init__(self, n: int) -> None:
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        self.n = n
        self._passed = 0

    def filter(self, batch, ctx):
        out = []
        for e in batch:
            if self._passed < self.n:
                self._passed += 1
                out.append(e)
        return out


class DuplicateFilter(Filter):
    """Delivers each message twice with probability ``rate`` (``unreliable`` model only)."""

    fifo_ok = False

    def __init__(self, rate: float = 1.0) -> None:
        self.rate = _check_rate("rate", rate)

    def filter(self, batch, ctx):
        out = []
        for e in batch:
            out.append(e)
            if ctx.rng.random() < self.rate:
                out.append(ctx.copy(e))
        return out


class ReorderFilter(Filter):
    """Adds a random latency in [0, ``max_delay``] to each message, so they overtake each other."""

    fifo_ok = False

    def __init__(self, max_delay: float) -> None:
        self.max_delay = check_seconds("max_delay", max_delay, "virtual seconds")

    def filter(self, batch, ctx):
        for e in batch:
            e.delay += ctx.rng.uniform(0.0, self.max_delay)
        return batch


class HoldFilter(Filter):
    """Holds matching messages until :meth:`release`, then lets them all go in order.

    In the ``fifo`` model a held message blocks its link like a stalled TCP
    stream: every later message on that link is held behind it.
    """

    def __init__(self, types: Optional[Iterable[str]] = None,
                 predicate: Optional[Callable[[Envelope], bool]] = None) -> None:
        self.types = None if types is None else _check_types(types)
        self.predicate = predicate
        self._held: List[Envelope] = []
        self._blocked_links: set = set()

    def _matches(self, e: Envelope, ctx: FilterContext) -> bool:
        if ctx.network_model == "fifo" and (e.src, e.dst) in self._blocked_links:
            return True
        if self.types is not None and e.kind not in self.types:
            return False
        return self.predicate is None or bool(self.predicate(e))

    def holds(self):
        return [self]

    def filter(self, batch, ctx):
        out = []
        for e in batch:
            if self._matches(e, ctx):
                e.held = ctx.direction
                self._held.append(e)
                self._blocked_links.add((e.src, e.dst))
            else:
                out.append(e)
        return out

    @property
    def held(self) -> Sequence[Envelope]:
        return tuple(self._held)

    def release(self) -> int:
        """Let everything held go on, in the order it was held; returns how many.

        Messages held on the send side then travel the link and pass the
        receiver's filters as usual; those held on the receive side are delivered.
        """
        held, self._held = self._held, []
        self._blocked_links.clear()
        if held:
            self._wiring.inject(held)
        return len(held)


class PredicateFilter(Filter):
    """Keeps the messages for which ``keep(envelope)`` is true and drops the rest."""

    def __init__(self, keep: Callable[[Envelope], bool]) -> None:
        if not callable(keep):
            raise ValueError(f"keep must be callable, got {keep!r}")
        self.keep = keep

    def filter(self, batch, ctx):
        return [e for e in batch if self.keep(e)]


class FilterFactory:
    """Builds the filters each node needs for one cluster-wide fault."""

    def generate(self, node_id: str, all_nodes: Sequence[str]) -> List[Filter]:
        raise NotImplementedError


class PartitionFilterFactory(FilterFactory):
    """Two groups that cannot reach each other; nodes in neither group keep talking to both."""

    def __init__(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        self.group_a = frozenset(group_a)
        self.group_b = frozenset(group_b)
        if not self.group_a or not self.group_b:
            raise ValueError("group_a and group_b must both be non-empty")
        overlap = sorted(self.group_a & self.group_b)
        if overlap:
            raise ValueError(f"group_a and group_b must be disjoint, both contain {overlap}")

    def generate(self, node_id, all_nodes):
        if node_id in self.group_a:
            return [PartitionFilter(self.group_b)]
        if node_id in self.group_b:
            return [PartitionFilter(self.group_a)]
        return []


class IsolationFilter(Filter):
    """Cuts the owner off from everyone, including nodes added after it was installed."""

    def filter(self, batch, ctx):
        return []

    def cuts(self, owner, peer):
        return True


class IsolationFilterFactory(FilterFactory):
    """One node cut off from every other node."""

    def __init__(self, node: str) -> None:
        self.node = node

    def generate(self, node_id, all_nodes):
        if node_id == self.node:
            return [IsolationFilter()]
        return [PartitionFilter([self.node])]
