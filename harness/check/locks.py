"""What pysyncobj's ``ReplLockManager`` promises, checked on what the harness saw.

The promise, from ``pysyncobj/batteries.py``: ``tryAcquire(lock)`` reports
True when this client got the lock (a grant that took longer than
``autoUnlockTime / 2`` is reported False and released again);
``isAcquired(lock)`` says whether this client holds it; a lock "will be
released automatically if no response from holder for more than
autoUnlockTime seconds", the holder's background thread prolonging its locks
while it lives.  Lock commands carry the issuing client's clock reading (its
"stamp"), and expiry compares stamps.  In a simulation every client reads
one virtual clock, so stamps are virtual times.

Three properties, each a :class:`~harness.check.invariants.Violation` kind:

``lock_mutual_exclusion``
    At no virtual instant do two clients hold the same lock.  A client holds
    ``L`` from a True ``tryAcquire`` until ``autoUnlockTime`` after it asked
    (its stamp; prolongation only extends this), or until it relinquishes
    ``L`` first: calls ``release``, or gets False from a ``tryAcquire``
    (which may have released it).  A relinquish concurrent with the grant
    voids the grant.  A True ``isAcquired`` sample is a holding at that
    instant, except when the client relinquished the lock since it asked for
    its last grant: its own replica may simply not have applied that yet (a
    local, stale-able read, tolerated).  A client's calls are assumed to be
    applied in the order it made them (pysyncobj forwards them in order over
    one connection).
``lock_handover``
    In every replica's sequence of applied lock commands, a holder loses a
    lock only by its own ``release``, or by expiry: the command that takes
    it over (another client's ``acquire``) or drops it (a ``prolongate``)
    carries a stamp more than ``autoUnlockTime`` after the holder's latest
    stamp in that replica.
``lock_agreement``
    ``isAcquired`` agrees with the replicated state: when a sample counts as
    a holding (as above), the most advanced replica (the one that applied
    the most entries) has the lock with that client.  A lagging replica that
    answers False while the lock is held is only stale, not a violation.

Clients are named by the node their lock manager runs on: give each node's
``ReplLockManager`` its node id as ``selfID`` (:mod:`harness.fuzz.batteries`
does).  Every check is a pure function of hand-buildable records, so a test
can make each property fail.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from harness.check.invariants import Violation
from harness.history import OK, Operation

TRY_ACQUIRE = "tryAcquire"
RELEASE = "release"

Entry = Tuple[str, float]  # (holder's client id, holder's latest stamp)


@dataclasses.dataclass(frozen=True)
class LockTransition:
    """One change a committed lock command made to one replica's lock table, as that replica applied it."""

    node: str
    incarnation: int
    time: float  # virtual time it was applied
    index: int  # log index of the command
    command: str  # "acquire", "prolongate" or "release"
    client: str  # the client that issued the command
    stamp: Optional[float]  # the issuer's clock reading in the command (None for release)
    lock: str
    before: Optional[Entry]
    after: Optional[Entry]


@dataclasses.dataclass(frozen=True)
class LockSample:
    """One ``isAcquired(lock)`` answer read on the client's own node at ``time`` (a local read), with the
    holder the most advanced replica had at that instant (None: nobody)."""

    time: float
    client: str
    lock: str
    held: bool
    replicated_holder: Optional[str]


@dataclasses.dataclass(frozen=True)
class _Holding:
    client: str
    start: float
    end: float  # exclusive; == start for an instant
    why: str

    def overlaps(self, other: "_Holding") -> bool:
        if self.start == self.end or other.start == other.end:  # an instant meets an interval or an instant
            point, span = (self, other) if self.start == self.end else (other, self)
            return span.start <= point.start < span.end or (span.start == span.end == point.start)
        return max(self.start, other.start) < min(self.end, other.end)


class _ClientView:
    """One client's grants and relinquishes of one lock, from its operations."""

    def __init__(self) -> None:
        self.grants: List[Operation] = []
        self.relinquished: List[float] = []  # release calls; completions of tryAcquire -> False

    def relinquished_in(self, lo: float, hi: float) -> Optional[float]:
        hits = [t for t in self.relinquished if lo <= t <= hi]
        return min(hits) if hits else None

    def stale_at(self, t: float) -> bool:
        """True when the client relinquished the lock since it asked for its last grant up to ``t``
        (a relinquish while that request was in flight may have been applied after it)."""
        last = max((g for g in self.grants if g.complete <= t), key=lambda g: g.complete, default=None)
        since = -math.inf if last is None else last.invoke
        return any(since <= r <= t for r in self.relinquished)


def _views(ops: Iterable[Operation]) -> Dict[Tuple[str, str], _ClientView]:
    views: Dict[Tuple[str, str], _ClientView] = {}
    for op in ops:
        if op.kind not in (TRY_ACQUIRE, RELEASE):
            continue
        view = views.setdefault((op.key, op.via), _ClientView())
        if op.kind == RELEASE:
            view.relinquished.append(op.invoke)
        elif op.outcome == OK and op.result is True:
            view.grants.append(op)
        elif op.outcome == OK:
            view.relinquished.append(op.complete)
    return views


def _counts(view: Optional[_ClientView], sample: LockSample) -> bool:
    return sample.held and (view is None or not view.stale_at(sample.time))


def _holdings(views: Dict[Tuple[str, str], _ClientView], samples: Sequence[LockSample],
              auto_unlock_time: float) -> Dict[str, List[_Holding]]:
    by_lock: Dict[str, List[_Holding]] = {}
    for (lock, client), view in views.items():
        for g in view.grants:
            end = g.invoke + auto_unlock_time
            gave_up = view.relinquished_in(g.invoke, end)
            if gave_up is not None:
                end = min(end, gave_up)
            if end > g.complete:
                by_lock.setdefault(lock, []).append(_Holding(client, g.complete, end, f"tryAcquire #{g.id} -> True"))
    for s in samples:
        if _counts(views.get((s.lock, s.client)), s):
            by_lock.setdefault(s.lock, []).append(_Holding(s.client, s.time, s.time, "isAcquired -> True"))
    return by_lock


def _mutual_exclusion(by_lock: Dict[str, List[_Holding]]) -> List[Violation]:
    found = []
    for lock in sorted(by_lock, key=repr):
        holdings = sorted(by_lock[lock], key=lambda h: (h.start, h.end, h.client))
        for i, a in enumerate(holdings):
            for b in holdings[i + 1:]:
                if b.start > a.end:
                    break
                if a.client != b.client and a.overlaps(b):
                    found.append(Violation("lock_mutual_exclusion", (
                        f"lock {lock!r} held by two clients at once: {a.client} over "
                        f"[{a.start:.6f}, {a.end:.6f}) ({a.why}) and {b.client} over "
                        f"[{b.start:.6f}, {b.end:.6f}) ({b.why})"), nodes=tuple(sorted({a.client, b.client}))))
    return found


def _handover(transitions: Iterable[LockTransition], auto_unlock_time: float) -> List[Violation]:
    found = []
    reported = set()  # (index, lock): every replica applies the same bad command; name it once
    # per (replica, incarnation, lock): the entry last seen and the holder's highest stamp in this tenure
    seen: Dict[Tuple[str, int, str], Tuple[Optional[Entry], float]] = {}
    for t in transitions:
        where = (t.node, t.incarnation, t.lock)
        last, highest = seen.get(where, (None, 0.0))
        if t.before is not None and last != t.before:  # first sight, or a snapshot replaced the table
            highest = t.before[1]
        if t.before is not None:
            holder = t.before[0]
            highest = max(highest, t.before[1])
            kept = t.after is not None and t.after[0] == holder
            expired = t.stamp is not None and t.stamp - highest > auto_unlock_time
            by_own_release = t.command == "release" and t.client == holder and t.after is None
            taken_over = t.command == "acquire" and t.after is not None and t.after[0] == t.client
            dropped = t.command == "prolongate" and t.after is None
            if not kept and not by_own_release and not ((taken_over or dropped) and expired) \
                    and (t.index, t.lock) not in reported:
                reported.add((t.index, t.lock))
                stamp = "no stamp" if t.stamp is None else f"stamp {t.stamp:.6f}"
                found.append(Violation("lock_handover", (
                    f"{t.node} (incarnation {t.incarnation}) applied {t.command} by {t.client} ({stamp}) at "
                    f"index {t.index}: lock {t.lock!r} went from {holder} (latest stamp {highest:.6f}) to "
                    f"{t.after[0] if t.after else 'nobody'} before {holder} released it or "
                    f"autoUnlockTime={auto_unlock_time} had passed"), nodes=(t.node,), indexes=(t.index,)))
        if t.after is None or t.before is None or t.after[0] != t.before[0]:
            highest = t.after[1] if t.after is not None else 0.0
        else:
            highest = max(highest, t.after[1])
        seen[where] = (t.after, highest)
    return found


def _agreement(views: Dict[Tuple[str, str], _ClientView], samples: Iterable[LockSample]) -> List[Violation]:
    return [Violation("lock_agreement", (
                f"isAcquired({s.lock!r}) on {s.client} said True at {s.time:.6f}, but the most advanced replica "
                f"gives the lock to {s.replicated_holder or 'nobody'}"), nodes=(s.client,))
            for s in samples
            if _counts(views.get((s.lock, s.client)), s) and s.replicated_holder != s.client]


def lock_violations(ops: Iterable[Operation], samples: Iterable[LockSample],
                    transitions: Iterable[LockTransition], auto_unlock_time: float) -> List[Violation]:
    """Every breach of the three properties (see the module docstring); empty when there is none.

    ``ops`` may hold any operations: only ``tryAcquire`` and ``release`` (key:
    the lock, via: the client) are read.  ``transitions`` must be in the order
    they were applied.
    """
    if auto_unlock_time <= 0:
        raise ValueError(f"auto_unlock_time must be > 0 seconds, got {auto_unlock_time!r}")
    samples = list(samples)
    views = _views(ops)
    return (_mutual_exclusion(_holdings(views, samples, auto_unlock_time))
            + _handover(transitions, auto_unlock_time) + _agreement(views, samples))
