"""A lone pysyncobj node driven by hand, to check that a source patch changes behaviour.

A patch that silently does nothing would make every test built on it
meaningless, so each injected bug (:mod:`harness.adapter.injected_bugs`) and each
fix (:mod:`harness.adapter.fixes`) comes with a *probe*: a few lines that set a
real ``SyncObj``'s private Raft state, hand it one message or one tick, and
read the outcome.  No cluster, no network (messages are recorded instead of
sent), and a private clock, so a probe also works next to a simulated cluster
alive in the same process.  Reading and writing the name-mangled state is
release knowledge, hence here in the adapter.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import os
import random
import tempfile
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import pysyncobj.pickle as pysyncobj_pickle
import pysyncobj.syncobj as _syncobj
from pysyncobj import SyncObjConf
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from harness.adapter import timing

#: pysyncobj's ``_RAFT_STATE`` codes (not harness.state's role names).
FOLLOWER, CANDIDATE, LEADER = 0, 1, 2
#: pysyncobj's no-op command type byte.
NOOP = b"\x01"
#: pysyncobj's membership-change command type byte.
MEMBERSHIP = b"\x02"


class _RecordingTransport(Transport):
    def __init__(self, syncObj, selfNode, otherNodes) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self.sent: List[Tuple[str, dict]] = []

    @property
    def ready(self) -> bool:
        return True

    def tryGetReady(self) -> None:
        pass

    def addNode(self, node) -> None:
        pass

    def dropNode(self, node) -> None:
        pass

    def send(self, node, message) -> bool:
        self.sent.append((node.id, message))
        return True

    def destroy(self) -> None:
        pass


class Probe:
    """A lone pysyncobj node whose private state a probe sets and reads.

    Messages are handed to the mangled handler directly (looked up on the class
    at call time, so a patch installed after construction is the one that runs).
    """

    def __init__(self, self_id: str = "a", others: Sequence[str] = ("b", "c"),
                 journal: Optional[str] = None, dump: Optional[str] = None, dynamic: bool = False) -> None:
        conf = SyncObjConf(autoTick=False, dynamicMembershipChange=dynamic, journalFile=journal,
                           fullDumpFile=dump, logCompactionMinEntries=10 ** 9, logCompactionMinTime=10 ** 9)
        self.obj = _syncobj.SyncObj(Node(self_id), [Node(o) for o in others], conf, nodeClass=Node,
                                    transportClass=_RecordingTransport)
        self.transport = self.obj._SyncObj__transport

    # state -------------------------------------------------------------------------------
    def set(self, name: str, value: Any) -> None:
        setattr(self.obj, "_SyncObj__" + name, value)

    def get(self, name: str) -> Any:
        return getattr(self.obj, "_SyncObj__" + name)

    def append(self, index: int, term: int, command: bytes = NOOP) -> None:
        self.get("raftLog").add(command, index, term)

    @property
    def members(self) -> List[str]:
        """The other voters this node counts, by id."""
        return sorted(n.id for n in self.get("otherNodes"))

    @property
    def log(self) -> List[Tuple[int, int]]:
        return [(e[1], e[2]) for e in self.get("raftLog")]

    def node(self, node_id: str) -> Node:
        for n in self.get("otherNodes"):
            if n.id == node_id:
                return n
        return Node(node_id)

    def make(self, role: int, term: int, voted_for: Optional[str] = None) -> None:
        self.set("raftState", role)
        self.set("raftCurrentTerm", term)
        self.set("votedForNodeId", voted_for)
        if role == LEADER:
            now = _syncobj.monotonicTime()
            self.set("raftLeader", self.get("selfNode"))
            for n in self.get("otherNodes"):
                self.get("raftNextIndex")[n] = self.log[-1][0] + 1
                self.get("raftMatchIndex")[n] = 0
                self.get("lastResponseTime")[n] = now

    # actions -----------------------------------------------------------------------------
    def receive(self, sender: str, message: dict) -> None:
        self.obj._SyncObj__onMessageReceived(self.node(sender), message)

    def tick(self) -> None:
        self.obj._onTick(0.0)

    def sent_to(self, node_id: str, kind: str) -> List[dict]:
        return [m for n, m in self.transport.sent if n == node_id and m["type"] == kind]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.obj._SyncObj__raftLog._destroy()
        with contextlib.suppress(Exception):
            self.obj._poller = None

    def __enter__(self) -> "Probe":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextlib.contextmanager
def scratch_files(*names: str) -> Iterator[List[str]]:
    """Paths ``names`` in a temporary directory that is gone afterwards: a probe's journal and dump files
    (a node restarted on the same paths is a restart)."""
    with tempfile.TemporaryDirectory(prefix="probe-") as d:
        yield [os.path.join(d, name) for name in names]


# --- messages, in pysyncobj's wire format -----------------------------------------------------
def vote_request(term: int, last_index: int, last_term: int) -> dict:
    return {"type": "request_vote", "term": term, "last_log_index": last_index, "last_log_term": last_term}


def append_entries(term: int, prev: Tuple[int, int], entries: Sequence[Tuple[int, int]], commit: int) -> dict:
    return {"type": "append_entries", "term": term, "commit_index": commit,
            "entries": [(NOOP, i, t) for i, t in entries], "prevLogIdx": prev[0], "prevLogTerm": prev[1]}


def snapshot_chunk(term: int, commit: int, data: bytes, first: bool, last: bool) -> dict:
    """An append_entries carrying one chunk of a snapshot (``serialized``: data, is first, is last)."""
    return {"type": "append_entries", "term": term, "commit_index": commit, "serialized": (data, first, last)}


def snapshot_data(last: Tuple[int, int], prev: Tuple[int, int], members: Sequence[str] = ()) -> bytes:
    """A whole snapshot as pysyncobj serializes one: no state machine data, the log ending at
    ``last`` (index, term) after ``prev``, the voters ``members`` (the cluster it records)."""
    data = io.BytesIO()
    with gzip.GzipFile(fileobj=data, mode="wb") as g:
        pysyncobj_pickle.dump((None, (NOOP,) + last, (NOOP,) + prev, {Node(m) for m in members}), g)
    return data.getvalue()


def membership_change(kind: str, node_id: str) -> bytes:
    """A membership entry's command as ``addNodeToCluster``/``removeNodeFromCluster`` write it (``kind``:
    ``add`` or ``rem``)."""
    return MEMBERSHIP + pysyncobj_pickle.dumps([kind, node_id, Node(node_id)])


# --- running one ------------------------------------------------------------------------------
@contextlib.contextmanager
def _probe_clock() -> Iterator[None]:
    """pysyncobj's clock and randomness for a probe: private, deterministic, and independent of any
    simulated cluster alive in this process (whose clock refuses reads outside its steps)."""
    ticks = itertools.count()
    with timing.private_clock(lambda: 1000.0 + next(ticks) * 1e-6, random.Random(0)):
        yield


def run(probe: Callable[[Probe], bool], peers: Sequence[str] = ("b", "c")) -> bool:
    """``probe`` on a fresh node ``a`` with ``peers``, under the probe clock; whether it passed."""
    with _probe_clock():
        p = Probe(others=peers)
        try:
            return bool(probe(p))
        finally:
            p.close()
