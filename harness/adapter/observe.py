"""Reading the private state of the nodes a cluster runs.

pysyncobj keeps Raft state in name-mangled attributes.  Everything the
clusters, the checker and the reports need of it goes through the functions
here, checked against releases 0.3.11 to 0.3.17, so that a new release means
editing one file (the probes of :mod:`harness.adapter.probes`, which set that
state by hand on a lone node, are the only other reader).  Nothing here changes how a node
behaves except :func:`watch_journal`, which makes the journal a transparent
recorder of which log indexes changed, and the storage hooks at the end
(:func:`intercept_journal_writes` and friends), which ``harness.sim.storage`` uses
to inject disk faults.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import pysyncobj
import pysyncobj.version
from pysyncobj import SyncObj

from harness.state import CANDIDATE, FOLLOWER, LEADER, Entry, NodeState

VERSION: str = pysyncobj.version.VERSION
VERSION_INFO: Tuple[int, ...] = tuple(int(p) for p in VERSION.split(".")[:3])

_ROLES = {0: FOLLOWER, 1: CANDIDATE, 2: LEADER}

#: pysyncobj FAIL_REASON codes by name; UNKNOWN_OUTCOME exists from 0.3.15.
FAIL_REASONS: Dict[int, str] = {
    v: k for k, v in vars(pysyncobj.FAIL_REASON).items() if k.isupper() and isinstance(v, int)
}


class WatchedJournal:
    """Mixed into a pysyncobj journal's own class by :func:`watch`: remembers, since last asked, the lowest
    log index written and the first drop of the commit index pysyncobj stored (a rollback undone before
    the next look).

    Only the bookkeeping is added; every call reaches the journal's own method, so what ends up on disk
    is exactly what pysyncobj wrote.  The journal object stays the one pysyncobj made (its class is
    swapped for a subclass), so the reads pysyncobj makes all the time (``log[i]``, ``len(log)``) cost
    what they cost without the harness.
    """

    #: Called with no arguments after the journal was msync'ed (``flush``, ``_destroy``); see harness.sim.storage.
    on_flush = None

    def _start_watching(self) -> None:
        # True while FileJournal.deleteEntriesTo rewrites the entries it keeps (clear(), then add() of each):
        # those inner calls change no entry and are not counted.
        self.compacting = False
        self.changed_from: Optional[int] = 1
        self.resets = 0  # clear() calls: pysyncobj replacing the log by a received snapshot
        # pysyncobj stores every new commit index through the journal: the highest this incarnation
        # stored, and the first drop below it since last asked (the value read from disk at start
        # is not counted: pysyncobj clamps it to the log on its first tick).
        self.commit_high = 0
        self.commit_fell: Optional[Tuple[int, int]] = None

    def _mark(self, index: int) -> None:
        if self.changed_from is None or index < self.changed_from:
            self.changed_from = index

    def add(self, command: bytes, idx: int, term: int) -> None:
        if not self.compacting:
            self._mark(idx)
        return super().add(command, idx, term)

    def clear(self) -> None:
        if not self.compacting:
            self._mark(0)
            self.resets += 1
        return super().clear()

    def deleteEntriesTo(self, entryTo: int) -> None:  # compaction drops a prefix; no entry changes
        self.compacting = True
        try:
            return super().deleteEntriesTo(entryTo)
        finally:
            self.compacting = False

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        if len(self):
            self._mark(self[0][1] + entryFrom)
        return super().deleteEntriesFrom(entryFrom)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if raftCommitIndex < self.commit_high:
            if self.commit_fell is None:
                self.commit_fell = (self.commit_high, raftCommitIndex)
        else:
            self.commit_high = raftCommitIndex
        return super().setRaftCommitIndex(raftCommitIndex)

    def flush(self) -> None:
        result = super().flush()
        if self.on_flush is not None:
            self.on_flush()
        return result

    def _destroy(self) -> None:
        result = super()._destroy()
        if self.on_flush is not None:
            self.on_flush()
        return result

    def take_changes(self) -> Tuple[Optional[int], Optional[Tuple[int, int]]]:
        """(lowest index changed, first commit-index drop) since last asked; resets both."""
        changed, self.changed_from = self.changed_from, None
        fell, self.commit_fell = self.commit_fell, None
        return changed, fell


#: (mixin, pysyncobj journal class) -> their subclass, made once.
_SUBCLASSES: Dict[Tuple[type, type], type] = {}


def watch(journal: Any, mixin: type = WatchedJournal) -> Any:
    """Make ``journal`` (a pysyncobj journal, watched already or not) an instance of ``mixin`` (a
    :class:`WatchedJournal` or a subclass of it) over its own pysyncobj class; returns it."""
    base = getattr(type(journal), "_journal_class", type(journal))
    cls = _SUBCLASSES.get((mixin, base))
    if cls is None:
        cls = _SUBCLASSES[(mixin, base)] = type(f"{mixin.__name__}[{base.__name__}]", (mixin, base),
                                                {"_journal_class": base})
    fresh = not isinstance(journal, WatchedJournal)
    journal.__class__ = cls
    if fresh:
        journal._start_watching()
    return journal


def _log(node: SyncObj) -> Any:
    return node._SyncObj__raftLog


def watch_journal(node: SyncObj) -> None:
    """Watch the node's journal (:class:`WatchedJournal`), once per node object."""
    log = _log(node)
    if not isinstance(log, WatchedJournal):
        watch(log)


def entries(node: SyncObj, lo: int, hi: Optional[int] = None) -> List[Entry]:
    """Log entries with ``lo <= index <= hi`` that are still in the log."""
    log = _log(node)
    if not len(log):
        return []
    first = log[0][1]
    start = max(lo - first, 0)
    stop = len(log) if hi is None else max(hi - first + 1, 0)
    return [Entry(e[1], e[2], bytes(e[0])) for e in log[start:stop]]


def entry_term(node: SyncObj, index: int) -> Optional[int]:
    """Term of the log entry at ``index``, or None if it is not in the log."""
    log = _log(node)
    i = index - log[0][1] if len(log) else -1
    return log[i][2] if 0 <= i < len(log) else None


def applying_index(node: SyncObj) -> int:
    """Index of the entry being applied; valid inside a replicated method or its callback."""
    return node.raftLastApplied + 1


def role(node: SyncObj) -> str:
    return _ROLES[node._SyncObj__raftState]


def observe(node: SyncObj, node_id: str, incarnation: int, voter: bool, consume: bool = False,
            tail: int = 4) -> NodeState:
    """A frozen :class:`NodeState` of a live node; ``consume`` resets the journal's change marks
    (the lowest index changed, the first commit-index drop)."""
    log = _log(node)
    first_index, last_index, last_term = log[0][1], log[-1][1], log[-1][2]
    commit_fell = None
    if not isinstance(log, WatchedJournal):
        changed_from = first_index
    elif consume:
        changed_from, commit_fell = log.take_changes()
    else:
        changed_from, commit_fell = log.changed_from, log.commit_fell
    changed: Tuple[Entry, ...] = ()
    changed_prev_term = None
    if changed_from is not None:
        changed_from = max(changed_from, first_index)
        changed = tuple(entries(node, changed_from))
        if first_index < changed_from <= first_index + len(log):  # a journal with a gap (see
            changed_prev_term = log[changed_from - 1 - first_index][2]  # harness.sim.storage) is shorter
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
        commit_fell=commit_fell,
        changed=changed,
        tail=tuple(entries(node, max(last_index - tail + 1, first_index))),
    )


#: What :func:`next_deadline` returns for a node with work a tick would do right away.
NOW = float("-inf")


def next_deadline(node: SyncObj) -> float:
    """The earliest time, on the node's own clock, at which a tick could change anything, given no input.

    Mirrors every check of ``SyncObj._onTick`` (0.3.11 - 0.3.17): :data:`NOW` while there is work
    (a dump to load, commands queued, entries to apply, a serializer result, a forced or due log
    compaction, tick callbacks, onReady not yet called, a leader commit to advance), else the least of
    the one-second journal timer, the election deadline (once connected to anyone: connections arrive
    as inputs) or, on a leader, the next heartbeat and the moment it would step down for want of
    responses.  ``inf`` means only an input can make a tick act.  A tick before the returned time
    reads the clock and changes nothing else (the one-second timer only lags behind, as after a
    poller that woke late).
    """
    if not node._SyncObj__transport.ready or node._SyncObj__needLoadDumpFile \
            or node._SyncObj__onTickCallbacks or not node._SyncObj__onReadyCalled \
            or len(node._SyncObj__commandsQueue._FastQueue__queue) \
            or node.raftCommitIndex > node.raftLastApplied or node._SyncObj__forceLogCompaction:
        return NOW
    serializer = node._SyncObj__serializer
    if serializer._Serializer__serializeChecker is not None or serializer._Serializer__pid != 0:
        return NOW  # a dump being written or its outcome not yet collected
    conf = node._SyncObj__conf
    if len(_log(node)) > conf.logCompactionMinEntries:
        return NOW
    deadlines = [node._SyncObj__startTime + node._SyncObj__numOneSecondDumps,
                 node._SyncObj__lastSerializedTime + conf.logCompactionMinTime]
    state = node._SyncObj__raftState
    if state != 2:
        if node.selfNode is not None and node._SyncObj__connectedToAnyone():
            deadlines.append(node._SyncObj__raftElectionDeadline)
    else:
        others = node._SyncObj__otherNodes
        commit = node.raftCommitIndex
        if node._SyncObj__leaderCommitIndex != commit:
            return NOW
        match = node._SyncObj__raftMatchIndex
        majority = (len(others) + 1) / 2
        if _log(node)[-1][1] > commit and 1 + sum(match[n] > commit for n in others) > majority:
            return NOW
        deadlines.append(node._SyncObj__newAppendEntriesTime)
        # It steps down once no more than a minority (counting itself) answered within the fallback timeout.
        needed = int(majority)  # fresh answers it needs: 1 + needed > majority
        fresh = sorted((node._SyncObj__lastResponseTime[n] for n in others), reverse=True)
        if needed > len(fresh):
            return NOW
        if needed:
            deadlines.append(fresh[needed - 1] + conf.leaderFallbackTimeout)
    return min(deadlines)


def close_files(node: SyncObj) -> None:
    """Release a crashed node's file descriptors without saving anything pysyncobj would not.

    A killed process leaves its journal pages in the page cache (so mmap'd
    writes survive) and loses unsaved metadata; closing the mmap and file here
    does the same and keeps the harness from leaking descriptors.
    """
    journal_file = getattr(_log(node), "_FileJournal__journalFile", None)
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


# --- storage fault hooks (harness.sim.storage) ----------------------------------------------------------

def _file_journal(node: SyncObj) -> Any:
    """The node's FileJournal (watched or not), or None for an in-memory journal."""
    log = _log(node)
    return log if hasattr(log, "_FileJournal__journalFile") else None


def intercept_journal_writes(node: SyncObj, before_write: Callable[[int, int], None]) -> bool:
    """Call ``before_write(offset, size)`` ahead of every write into the node's journal file.

    The mmap'd journal (``ResizableFile``) gets the hook as an instance
    attribute: pysyncobj's code is untouched, and ``before_write`` may raise
    (an ``OSError`` looks to FileJournal exactly like a failed write).  False
    if the node has no file journal.
    """
    journal = _file_journal(node)
    if journal is None:
        return False
    resizable = journal._FileJournal__journalFile
    if getattr(resizable, "_harness_intercepted", False):
        return True
    original = resizable.write

    def write(offset, values):
        before_write(offset, len(values))
        return original(offset, values)

    resizable.write = write
    resizable._harness_intercepted = True
    return True


def journal_data_end(node: SyncObj) -> int:
    """Offset just past the last record of the node's journal file (0 without a file journal)."""
    journal = _file_journal(node)
    return 0 if journal is None else journal._FileJournal__currentOffset


def on_journal_flush(node: SyncObj, callback: Callable[[], None]) -> None:
    """Have ``callback()`` called whenever pysyncobj msyncs the node's journal (``flush``/``_destroy``)."""
    log = _log(node)
    if isinstance(log, WatchedJournal):
        log.on_flush = callback


def flush_journal(node: SyncObj) -> None:
    """msync the node's journal as ``FileJournal.flush()`` does (pysyncobj itself never calls it while running)."""
    _log(node).flush()


#: FileJournal's on-disk layout (the same in 0.3.11 – 0.3.17): a 40-byte header whose last 4 bytes are the
#: offset past the last record, then records ``size(4) | index(8) term(8) command | size(4)``.
_JOURNAL_FIRST_RECORD = 40
_JOURNAL_LAST_OFFSET_AT = 36


def read_journal_file(path: Union[str, os.PathLike]) -> List[Entry]:
    """The entries stored in a pysyncobj journal file, parsed without opening it through pysyncobj."""
    import struct

    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _JOURNAL_FIRST_RECORD:
        return []
    end = struct.unpack_from("<I", data, _JOURNAL_LAST_OFFSET_AT)[0]
    out: List[Entry] = []
    offset = _JOURNAL_FIRST_RECORD
    while offset < end and offset + 4 <= len(data):
        size = struct.unpack_from("<I", data, offset)[0]
        index, term = struct.unpack_from("<QQ", data, offset + 4)
        out.append(Entry(index, term, bytes(data[offset + 20:offset + 4 + size])))
        offset += size + 8
    return out
