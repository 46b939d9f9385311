"""What the harness observes of one node after a step: plain, immutable data.

Invariants and reports read only this, never a pysyncobj object, so they can
be tested on hand-built states and so a report can be rendered after the
nodes are gone.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Tuple

FOLLOWER = "follower"
CANDIDATE = "candidate"
LEADER = "leader"
CRASHED = "crashed"


@dataclasses.dataclass(frozen=True)
class Entry:
    index: int
    term: int
    command: bytes

    def __str__(self) -> str:
        return f"{self.index}@{self.term}"


@dataclasses.dataclass(frozen=True)
class NodeState:
    """One node at one instant.

    ``changed_from`` is the lowest log index written or truncated since the
    previous observation of this incarnation (``None``: the log is unchanged),
    and ``changed`` holds the entries from there to the end.  Checkers use the
    pair to stay incremental: cost per step follows what changed, not the log length.
    """

    id: str
    incarnation: int
    up: bool
    voter: bool
    role: str
    term: int
    voted_for: Optional[str]
    leader: Optional[str]
    commit_index: int
    last_applied: int
    first_index: int  # first index still in the log (after compaction, the snapshot point)
    last_index: int
    last_term: int
    next_index: Mapping[str, int] = dataclasses.field(default_factory=dict)
    match_index: Mapping[str, int] = dataclasses.field(default_factory=dict)
    membership: Tuple[str, ...] = ()  # voters this node believes in, itself included
    changed_from: Optional[int] = None
    changed_prev_term: Optional[int] = None  # term of the entry just before ``changed_from``
    # times this incarnation's log was replaced by a snapshot: one received from a leader, or its own
    # dump loaded at start over a journal that did not match it
    snapshots_installed: int = 0
    # (from, to): pysyncobj stored a lower commit index than before since the previous observation,
    # even if it rose again before this one (a rollback that lasted microseconds is still one).
    commit_fell: Optional[Tuple[int, int]] = None
    changed: Tuple[Entry, ...] = dataclasses.field(default=(), repr=False)
    tail: Tuple[Entry, ...] = dataclasses.field(default=(), repr=False)  # last few entries, for reports

    @property
    def is_leader(self) -> bool:
        return self.up and self.role == LEADER


def crashed_state(node_id: str, incarnation: int, voter: bool) -> NodeState:
    """A crashed node: nothing in memory is observable."""
    return NodeState(id=node_id, incarnation=incarnation, up=False, voter=voter, role=CRASHED,
                     term=0, voted_for=None, leader=None, commit_index=0, last_applied=0,
                     first_index=0, last_index=0, last_term=0)
