"""The one place that reads pysyncobj's private state.

pysyncobj keeps Raft state in name-mangled attributes.  Everything that
depends on their names lives here, checked against releases 0.3.11 to 0.3.17,
so that a new release means editing one file.  Nothing here changes how a node
behaves except :func:`watch_journal`, which wraps the journal in a transparent
recorder of which log indexes changed.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import pysyncobj
import pysyncobj.version

from .state import CANDIDATE, FOLLOWER, LEADER, Entry, NodeState

VERSION: str = pysyncobj.version.VERSION
VERSION_INFO: Tuple[int, ...] = tuple(int(p) for p in VERSION.split(".")[:3])

_ROLES = {0: FOLLOWER, 1: CANDIDATE, 2: LEADER}

#: pysyncobj FAIL_REASON codes by name; UNKNOWN_OUTCOME exists from 0.3.15.
FAIL_REASONS: Dict[int, str] = {
    v: k for k, v in vars(pysyncobj.FAIL_REASON).items() if k.isupper() and isinstance(v, int)
}


class WatchedJournal:
    """Wraps a pysyncobj journal and remembers the lowest log index written since last asked.

    Only the bookkeeping is added; every call reaches the real journal, so
    what ends up on disk is exactly what pysyncobj wrote.
    """

    def __init__(self, inner) -> None:
        self._inner = inner
        self.changed_from: Optional[int] = 1
        self.resets = 0  # clear() calls: pysyncobj replacing the log by a received snapshot

    def _mark(self, index: int) -> None:
        if self.changed_from is None or index < self.changed_from:
            self.changed_from = index

    def add(self, command, idx, term):
        self._mark(idx)
        return self._inner.add(command, idx, term)

    def clear(self):
        self._mark(0)
        self.resets += 1
        return self._inner.clear()

    def deleteEntriesFrom(self, entryFrom):
        if len(self._inner):
            self._mark(self._inner[0][1] + entryFrom)
        return self._inner.deleteEntriesFrom(entryFrom)

    def deleteEntriesTo(self, entryTo):  # compaction drops a prefix; no entry changes
        return self._inner.deleteEntriesTo(entryTo)

    def __getitem__(self, item):
        return self._inner[item]

    def __len__(self):
        return len(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def take_changes(self) -> Optional[int]:
        changed, self.changed_from = self.changed_from, None
        return changed


def _log(node):
    return node._SyncObj__raftLog


def watch_journal(node) -> None:
    """Put a :class:`WatchedJournal` around the node's journal (once per node object)."""
    log = _log(node)
    if not isinstance(log, WatchedJournal):
        node._SyncObj__raftLog = WatchedJournal(log)


def entries(node, lo: int, hi: Optional[int] = None) -> List[Entry]:
    """Log entries with ``lo <= index <= hi`` that are still in the log."""
    log = _log(node)
    if not len(log):
        return []
    first = log[0][1]
    start = max(lo - first, 0)
    stop = len(log) if hi is None else max(hi - first + 1, 0)
    return [Entry(e[1], e[2], bytes(e[0])) for e in log[start:stop]]


def applying_index(node) -> int:
    """Index of the entry being applied; valid inside a replicated method or its callback."""
    return node.raftLastApplied + 1


def role(node) -> str:
    return _ROLES[node._SyncObj__raftState]


def observe(node, node_id: str, incarnation: int, voter: bool, consume: bool = False,
            tail: int = 4) -> NodeState:
    """A frozen :class:`NodeState` of a live node; ``consume`` resets the journal's change mark."""
    log = _log(node)
    first_index, last_index, last_term = log[0][1], log[-1][1], log[-1][2]
    if not isinstance(log, WatchedJournal):
        changed_from = first_index
    elif consume:
        changed_from = log.take_changes()
    else:
        changed_from = log.changed_from
    changed: Tuple[Entry, ...] = ()
    changed_prev_term = None
    if changed_from is not None:
        changed_from = max(changed_from, first_index)
        changed = tuple(entries(node, changed_from))
        if changed_from > first_index:
            changed_prev_term = log[changed_from - 1 - first_index][2]
    leader = node._getLeader()
    self_node = node.selfNode
    members = {n.id for n in node.otherNodes}
    if self_node is not None:
        members.add(self_node.id)
    return NodeState(
        id=node_id,
        incarnation=incarnation,
        up=True,
        voter=voter,
        role=role(node),
        term=node.raftCurrentTerm,
        voted_for=node._SyncObj__votedForNodeId,
        leader=None if leader is None else leader.id,
        commit_index=node.raftCommitIndex,
        last_applied=node.raftLastApplied,
        first_index=first_index,
        last_index=last_index,
        last_term=last_term,
        next_index={n.id: i for n, i in sorted(node._SyncObj__raftNextIndex.items(), key=lambda kv: kv[0].id)},
        match_index={n.id: i for n, i in sorted(node._SyncObj__raftMatchIndex.items(), key=lambda kv: kv[0].id)},
        membership=tuple(sorted(members)),
        changed_from=changed_from,
        changed_prev_term=changed_prev_term,
        snapshots_installed=getattr(log, "resets", 0),
        changed=changed,
        tail=tuple(entries(node, max(last_index - tail + 1, first_index))),
    )


def close_files(node) -> None:
    """Release a crashed node's file descriptors without saving anything pysyncobj would not.

    A killed process leaves its journal pages in the page cache (so mmap'd
    writes survive) and loses unsaved metadata; closing the mmap and file here
    does the same and keeps the harness from leaking descriptors.
    """
    log = _log(node)
    inner = log._inner if isinstance(log, WatchedJournal) else log
    journal_file = getattr(inner, "_FileJournal__journalFile", None)
    if journal_file is not None:
        journal_file._ResizableFile__mm.close()
        journal_file._ResizableFile__f.close()
    serializer = node._SyncObj__serializer
    for transmission in serializer._Serializer__transmissions.values():
        f = transmission.get("file")
        if f is not None:
            f.close()
    serializer._Serializer__transmissions.clear()
    incoming = serializer._Serializer__incomingTransmissionFile
    if incoming is not None and hasattr(incoming, "close"):
        incoming.close()
    notifier = getattr(node, "_SyncObj__pipeNotifier", None)
    if notifier is not None:
        os.close(notifier._PipeNotifier__pipeR)
        os.close(notifier._PipeNotifier__pipeW)
