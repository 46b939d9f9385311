"""What happened inside a node, one record per change, as the stream checkers consume it.

A step-end sample of every node (:class:`harness.state.NodeState`) misses what
lasts less than a step (two leaders of one term until one hears the other, a
vote granted twice, an entry applied and then rolled back) and can invent
what never happened (a log copy that went stale while the node compacted its
log).  The simulated cluster therefore records, as it happens, every change
of role, term, vote, log, commit index, applied index and a leader's match
indexes of every node incarnation (:mod:`harness.adapter.events` does the recording), and the
checkers in :mod:`harness.check.stream` judge that stream.

These are plain, immutable data: no pysyncobj object, so the checkers can be
tested on hand-built sequences and a report can name an event after the nodes
are gone.  Every event carries the virtual time and what the node was
handling (a delivered message, a tick, a client call, its start).
Log entries are :class:`harness.state.Entry` values whose ``command`` is a
digest of the command (:func:`digest`), not the command itself.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional, Tuple

from harness.state import Entry


def digest(command: bytes) -> bytes:
    """The 8-byte digest events carry instead of a command: equal commands, equal digests."""
    return hashlib.blake2b(command, digest_size=8).digest()


@dataclasses.dataclass(frozen=True)
class Handling:
    """What a node was doing when an event happened.

    ``activity`` is ``"message"`` (handling the message ``seq``), ``"tick"``
    (a tick; with ``seq`` set, the tick pysyncobj runs right after that
    message arrived), ``"start"``, or the cluster's own description of a call
    into the node (``"client set"``, ``"connected n2"``...).
    """

    activity: str
    seq: Optional[int] = None
    src: Optional[str] = None
    dst: Optional[str] = None
    kind: Optional[str] = None

    def __str__(self) -> str:
        if self.seq is None:
            return self.activity
        message = f"{self.kind} #{self.seq} {self.src}->{self.dst}"
        return message if self.activity == "message" else f"{self.activity} after {message}"


START = Handling("start")


@dataclasses.dataclass(frozen=True)
class Event:
    """Something that changed in incarnation ``incarnation`` of node ``node`` at virtual ``time``."""

    time: float
    node: str
    incarnation: int
    handling: Handling


@dataclasses.dataclass(frozen=True)
class Started(Event):
    """A node incarnation was built: what it came back with from its files (nothing on a first start).

    ``vote_durable``: this pysyncobj release stores term and vote in the journal (0.3.16+), so a vote
    given before a crash still binds the next incarnation.
    """

    term: int
    voted_for: Optional[str]
    log: Tuple[Entry, ...]
    vote_durable: bool


@dataclasses.dataclass(frozen=True)
class Crashed(Event):
    """The incarnation is gone (crash, or removal from the cluster); its memory is lost."""


@dataclasses.dataclass(frozen=True)
class LeaderElected(Event):
    """The node became leader of ``term`` (or, leader already, took a term it was never elected in).

    ``voters``: the configuration it counted votes in (its voters, itself included); empty: not known.
    """

    term: int
    voters: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class VoteGranted(Event):
    """The node voted for ``candidate`` in ``term`` (a candidate's vote for itself included)."""

    term: int
    candidate: str


@dataclasses.dataclass(frozen=True)
class EntryWritten(Event):
    """``entry`` was appended to the log; ``prev_term`` is the term of the entry before it (None: first)."""

    entry: Entry
    prev_term: Optional[int]


@dataclasses.dataclass(frozen=True)
class LogTruncated(Event):
    """Entries from index ``from_index`` on were deleted; the first ``keep`` entries of the log stay."""

    from_index: int
    keep: int


@dataclasses.dataclass(frozen=True)
class LogCompacted(Event):
    """The first ``drop`` entries were deleted (a snapshot covers them); the log now starts at ``first_index``."""

    first_index: Optional[int]
    drop: int


@dataclasses.dataclass(frozen=True)
class SnapshotInstalled(Event):
    """The log was emptied to load a snapshot (received, or the node's own at start); the snapshot's
    last two entries follow as :class:`EntryWritten`."""


@dataclasses.dataclass(frozen=True)
class LogReloaded(Event):
    """A log change failed half-way (an injected I/O error): the whole log as it now is."""

    log: Tuple[Entry, ...]


@dataclasses.dataclass(frozen=True)
class CommitChanged(Event):
    """The commit index moved from ``old`` to ``new`` (``old`` None: the first one this incarnation
    stands by, once it has loaded its snapshot).

    ``entries``: the entries of ``(old, new]`` (from the log's start when ``old`` is None) as the
    node's own log held them at that instant; an index missing from them is not in the log.
    ``term`` is the node's current term, ``last_index`` its last log index, ``leader`` whether it was
    leader at that instant (a follower's commit index follows its leader's; a leader's is its own count).
    """

    old: Optional[int]
    new: int
    term: int
    last_index: int
    entries: Tuple[Entry, ...]
    leader: bool = False


@dataclasses.dataclass(frozen=True)
class Applied(Event):
    """The applied index moved from ``old`` to ``new``; ``term`` and ``entries`` as for
    :class:`CommitChanged` (a jump over indexes no longer in the log is a snapshot being loaded)."""

    old: Optional[int]
    new: int
    term: int
    entries: Tuple[Entry, ...]


@dataclasses.dataclass(frozen=True)
class MatchRaised(Event):
    """Leader ``node`` of ``term`` raised its match index for ``follower`` to ``index``, on a reply.

    ``follower_incarnation`` and ``follower_term`` are the follower's running incarnation and its current
    term at that instant (both None while it is down: the reply outlived the incarnation that sent it).
    """

    term: int
    follower: str
    index: int
    follower_incarnation: Optional[int]
    follower_term: Optional[int]
