"""Storage fault injection: named failpoints on each node's journal and dump files.

Every :class:`~harness.sim.cluster.Cluster` owns a :class:`StorageFaults`
(``cluster.storage``).  Switch a failpoint on for one node with
``cluster.storage.enable("dump_torn", "n2")`` and off with ``disable``;
``clear()`` switches everything off.  pysyncobj's code is never modified: the
faults are injected at the file level, by

* wrapping the ``write`` of each node's mmap'd journal file (``ResizableFile``,
  through :mod:`harness.adapter.observe`),
* hooking the files pysyncobj opens for writing and renames (through
  :mod:`harness.adapter.files`) while a cluster with a failpoint switched on
  is alive (reference counted, like :mod:`harness.sim.clock`; removed when the
  last such cluster closes), and
* rewriting a crashed node's files in :meth:`StorageFaults.on_crash`, which
  ``Cluster.crash`` calls once the node's files are closed.

The failpoints (:data:`FAILPOINTS`):

``journal_unflushed_lost``
    The crash is a power loss: the node's files (journal, ``.meta``, dump)
    go back to what was on disk at the last *flush point*.  pysyncobj never
    fsyncs while it runs (the journal is an mmap it msyncs only in
    ``FileJournal.flush()``, which nothing calls, and ``_destroy()``; the
    ``.meta`` and dump files are written and renamed without ``fsync``), so
    the flush points are the OS's own writeback: every ``writeback_interval``
    virtual seconds (default 5 s, Linux's ``dirty_writeback_centisecs``; Linux
    waits for data to be 30 s old, so this model loses *less* than Linux
    would) the whole node directory is taken as durable, and an msync of the
    journal makes the journal durable at once.
``dump_write_fails``
    Writing a dump file (the node's own snapshot, ``dump.tmp``, and one
    received from the leader, ``dump.1.tmp``) raises ``OSError(EIO)``.
``dump_torn``
    At a crash, a dump that was renamed into place since the last writeback
    keeps only a prefix of its bytes (``torn_fraction`` of them): the rename
    reached the disk, the data did not all follow.  While the node runs the
    page cache still holds the whole file, so only a restart sees the tear.
``crash_between_dump_and_truncate``
    The node crashes right after pysyncobj renamed a new dump of its own into
    place, before the next tick truncates the log (``deleteEntriesTo``): the
    dump and the untruncated journal are both on disk.
``disk_full``
    Writes that need new space raise ``OSError(ENOSPC)``: journal appends
    past the extent the journal file has already written (rewrites inside it
    need no space and succeed; set ``block_size`` to 4096 to let an append
    finish the current block first, as a real filesystem would), the
    ``.meta`` sidecar, and dump files.  A
    real full disk under pysyncobj's *mmap'd* journal raises SIGBUS when a
    page fault cannot allocate a block, killing the process; this failpoint
    models a journal whose writes fail with an error instead.

Injected exceptions are :class:`InjectedStorageFault` (an ``OSError``), so
pysyncobj handles them exactly like real ones; :meth:`StorageFaults.is_injected`
tells a captured :class:`~harness.contract.NodeError` that is such a fault
from one that is a consequence of it.  Everything happens in virtual time and
in a fixed order: same seed and same steps, same files.
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from harness.adapter import files
from harness.adapter import observe as compat

FAILPOINTS: Tuple[str, ...] = (
    "journal_unflushed_lost",
    "dump_write_fails",
    "dump_torn",
    "crash_between_dump_and_truncate",
    "disk_full",
)

#: File names inside a node's directory (``Cluster`` names the journal and the dump; pysyncobj adds the rest).
JOURNAL = "journal"
META = "journal.meta"
DUMP = "dump"
DUMP_TMP = "dump.tmp"        # Serializer.serialize writes here, then renames onto DUMP
DUMP_INCOMING = "dump.1.tmp"  # Serializer.setTransmissionData (a snapshot from the leader)


class InjectedStorageFault(OSError):
    """An I/O error raised by a failpoint (never by the real disk)."""


@dataclasses.dataclass(frozen=True)
class Injection:
    """One thing a failpoint did, for tests and reports."""

    time: float
    node: str
    failpoint: str
    what: str


class _FailingFile:
    """A real file whose writes raise: what ``open`` gives pysyncobj on a failing disk.

    ``make_error`` (which records the injection) is called for the first
    failed write only; later ones (e.g. gzip's close in a finalizer) raise a copy.
    """

    def __init__(self, f, make_error: Callable[[], OSError]) -> None:
        self._f = f
        self._make_error = make_error
        self._error: Optional[OSError] = None

    def write(self, data):
        if self._error is None:
            self._error = self._make_error()
            raise self._error
        raise type(self._error)(*self._error.args)

    writelines = write

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False

    def __getattr__(self, name):
        return getattr(self._f, name)


class _Patches:
    """The file hooks installed while any cluster has a failpoint on (reference counted)."""

    def __init__(self) -> None:
        self.users: List["StorageFaults"] = []
        self.saved: Optional[files.Saved] = None

    def acquire(self, owner: "StorageFaults") -> None:
        if owner in self.users:
            return
        if not self.users:
            self.saved = files.install(self.dump_opened, self.journal_opened, self.replaced)
        self.users.append(owner)

    def release(self, owner: "StorageFaults") -> None:
        if owner not in self.users:
            return
        self.users.remove(owner)
        if not self.users:
            files.restore(self.saved)
            self.saved = None

    def owner(self, path) -> Tuple[Optional["StorageFaults"], Optional[str], str]:
        """(faults, node id, file name) for a path inside a live cluster's node directory."""
        path = os.fspath(path)
        node_dir, name = os.path.split(path)
        root, node_id = os.path.split(node_dir)
        for faults in self.users:
            if faults.root == root:
                return faults, node_id, name
        return None, None, name

    # --- the hooks -------------------------------------------------------------------------------
    def dump_opened(self, path, f):
        faults, node_id, name = self.owner(path)
        if faults is not None:
            return faults._dump_file_opened(node_id, name, f)
        return f

    def journal_opened(self, path, f):
        faults, node_id, name = self.owner(path)
        if faults is not None:
            return faults._journal_file_opened(node_id, name, f)
        return f

    def replaced(self, src) -> None:
        faults, node_id, name = self.owner(src)
        if faults is not None:
            faults._replaced(node_id, name)


_PATCHES = _Patches()


def patched() -> bool:
    """True while some cluster holds the pysyncobj file hooks."""
    return bool(_PATCHES.users)


class StorageFaults:
    """Named storage failpoints for the nodes of one cluster (see the module docstring).

    ``root`` is the cluster's directory (one subdirectory per node),
    ``schedule(time, action, *args)`` puts an action on the cluster's event
    queue, ``now()`` reads its virtual clock without moving it and
    ``crash(node_id)`` crashes a node.
    """

    def __init__(self, root, schedule: Callable[..., None], now: Callable[[], float],
                 crash: Callable[[str], None], writeback_interval: float = 5.0,
                 torn_fraction: float = 0.5, block_size: int = 1) -> None:
        self.root = os.fspath(root)
        self._schedule = schedule
        self._now = now
        self._crash = crash
        self._enabled: Dict[str, Set[str]] = {name: set() for name in FAILPOINTS}
        self.injections: List[Injection] = []
        self._durable: Dict[str, Dict[str, bytes]] = {}  # node -> file name -> bytes at the last flush point
        self.last_writeback = 0.0
        self._writeback_gen = 0
        self._writeback_interval = 0.0
        self.writeback_interval = writeback_interval
        self.torn_fraction = torn_fraction
        self.block_size = block_size  # disk_full: journal bytes are allocated in blocks of this size
        self._live: Dict[str, Any] = {}  # node -> its live pysyncobj object
        self._extent: Dict[str, int] = {}  # node -> end of the journal bytes written, this incarnation
        self._crash_gen = 0  # bumped to call off every crash still due
        self._closed = False

    # --- switching failpoints --------------------------------------------------------------------
    def _check(self, failpoint: str, node_id: str) -> None:
        if failpoint not in self._enabled:
            raise ValueError(f"failpoint must be one of {list(FAILPOINTS)}, got {failpoint!r}")
        if not isinstance(node_id, str) or not os.path.isdir(os.path.join(self.root, node_id)):
            raise ValueError(f"node_id must name a node of this cluster, got {node_id!r}")

    def enable(self, failpoint: str, node_id: str) -> None:
        """Switch ``failpoint`` on for ``node_id`` (it stays on across crashes and restarts)."""
        self._check(failpoint, node_id)
        if self._closed:
            raise RuntimeError("this cluster is closed")
        _PATCHES.acquire(self)
        if failpoint == "disk_full" and not self._enabled["disk_full"]:
            for live_id, node in sorted(self._live.items()):
                if live_id not in self._extent:
                    self._intercept_writes(live_id, node)
        self._enabled[failpoint].add(node_id)

    def disable(self, failpoint: str, node_id: str) -> None:
        self._check(failpoint, node_id)
        self._enabled[failpoint].discard(node_id)

    def clear(self) -> None:
        """Switch every failpoint off for every node and call off a crash that was still due."""
        for nodes in self._enabled.values():
            nodes.clear()
        self._crash_gen += 1

    def is_enabled(self, failpoint: str, node_id: str) -> bool:
        return node_id in self._enabled[failpoint]

    def enabled(self) -> Dict[str, Tuple[str, ...]]:
        """Every failpoint that is on, with its nodes."""
        return {name: tuple(sorted(nodes)) for name, nodes in self._enabled.items() if nodes}

    def path(self, node_id: str, name: str = JOURNAL) -> Path:
        """Where ``node_id`` keeps the file ``name`` (``JOURNAL``, ``META``, ``DUMP``, ...)."""
        return Path(self.root, node_id, name)

    def is_injected(self, node_error) -> bool:
        """True if a captured NodeError is an injected fault itself (not something it led to)."""
        lines = node_error.traceback.rstrip().splitlines()
        return bool(lines) and lines[-1].startswith(f"{__name__}.{InjectedStorageFault.__name__}")

    def _record(self, node_id: str, failpoint: str, what: str) -> None:
        self.injections.append(Injection(self._now(), node_id, failpoint, what))

    def _fault(self, node_id: str, failpoint: str, code: int, what: str) -> InjectedStorageFault:
        self._record(node_id, failpoint, what)
        return InjectedStorageFault(code, f"{os.strerror(code)} (injected: {failpoint} on {node_id}, {what})")

    # --- flush points ----------------------------------------------------------------------------
    @property
    def writeback_interval(self) -> float:
        """Virtual seconds between two writebacks of every dirty page (``math.inf``: never)."""
        return self._writeback_interval

    @writeback_interval.setter
    def writeback_interval(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError(f"writeback_interval must be > 0 virtual seconds (or math.inf), got {seconds!r}")
        self._writeback_interval = float(seconds)
        self._writeback_gen += 1
        if math.isfinite(seconds):
            self._schedule(max(self._now(), self.last_writeback + seconds), self._periodic_writeback,
                           self._writeback_gen)

    def _periodic_writeback(self, gen: int) -> None:
        if gen != self._writeback_gen or self._closed:
            return
        self.writeback()
        self._schedule(self._now() + self._writeback_interval, self._periodic_writeback, gen)

    def writeback(self, node_id: Optional[str] = None) -> None:
        """Make what is on disk now durable (every node, or one): a flush point, as ``sync`` would."""
        nodes = [node_id] if node_id is not None else sorted(os.listdir(self.root))
        for n in nodes:
            self._durable[n] = self._read_dir(n)
        if node_id is None:
            self.last_writeback = self._now()

    def durable_files(self, node_id: str) -> Dict[str, bytes]:
        """The node's files as of its last flush point (what survives ``journal_unflushed_lost``)."""
        return dict(self._durable.get(node_id, {}))

    def _read_dir(self, node_id: str) -> Dict[str, bytes]:
        d = os.path.join(self.root, node_id)
        out = {}
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                path = os.path.join(d, name)
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        out[name] = f.read()
        return out

    def _journal_flushed(self, node_id: str) -> None:
        # msync: the journal's pages (not the .meta or the dump) are on disk now.
        path = os.path.join(self.root, node_id, JOURNAL)
        with open(path, "rb") as f:
            self._durable.setdefault(node_id, {})[JOURNAL] = f.read()

    # --- the cluster's hooks ---------------------------------------------------------------------
    def attach(self, node_id: str, node) -> None:
        """A new incarnation of ``node_id`` started: route its journal writes through the failpoints."""
        self._live[node_id] = node
        self._extent.pop(node_id, None)  # a new incarnation: its journal is not intercepted yet
        compat.on_journal_flush(node, functools.partial(self._journal_flushed, node_id))
        if self._enabled["disk_full"]:
            self._intercept_writes(node_id, node)

    def _intercept_writes(self, node_id: str, node) -> None:
        """Journal writes go through ``_journal_write`` once ``disk_full`` has been used in this
        cluster: the hook sits on the hottest path, so clusters that never fill a disk skip it."""
        self._extent[node_id] = compat.journal_data_end(node)
        compat.intercept_journal_writes(node, functools.partial(self._journal_write, node_id))

    def on_crash(self, node_id: str) -> None:
        """``node_id`` just crashed (its files are closed): apply what the failpoints do to its disk."""
        self._live.pop(node_id, None)
        if node_id in self._enabled["journal_unflushed_lost"]:
            self._restore_durable(node_id)
        if node_id in self._enabled["dump_torn"]:
            self._tear_dump(node_id)

    def close(self) -> None:
        """Stop writebacks and give pysyncobj its own ``open`` and ``atomicReplace`` back. Idempotent."""
        self._closed = True
        self._writeback_gen += 1
        self._live.clear()
        _PATCHES.release(self)

    # --- what the failpoints do ------------------------------------------------------------------
    def _journal_write(self, node_id: str, offset: int, size: int) -> None:
        end = offset + size
        extent = self._extent.get(node_id, 0)
        if end > extent:
            if node_id in self._enabled["disk_full"] and end > self._round_up(extent):
                raise self._fault(node_id, "disk_full", errno.ENOSPC,
                                  f"journal write of {size} bytes at offset {offset}")
            self._extent[node_id] = end

    def _journal_file_opened(self, node_id: str, name: str, f):
        if node_id in self._enabled["disk_full"]:
            return _FailingFile(f, lambda: self._fault(node_id, "disk_full", errno.ENOSPC, f"write to {name}"))
        return f

    def _dump_file_opened(self, node_id: str, name: str, f):
        if name not in (DUMP_TMP, DUMP_INCOMING):
            return f
        if node_id in self._enabled["disk_full"]:
            return _FailingFile(f, lambda: self._fault(node_id, "disk_full", errno.ENOSPC, f"write to {name}"))
        if node_id in self._enabled["dump_write_fails"]:
            return _FailingFile(f, lambda: self._fault(node_id, "dump_write_fails", errno.EIO, f"write to {name}"))
        return f

    def _replaced(self, node_id: str, name: str) -> None:
        if name == DUMP_TMP and node_id in self._enabled["crash_between_dump_and_truncate"] \
                and node_id in self._live:
            self._record(node_id, "crash_between_dump_and_truncate", "dump replaced; crash before the log is truncated")
            # Runs before anything else still queued (a time earlier than any), so the node never
            # ticks again: the tick that wrote the dump ends, then the node is gone.
            self._schedule(-math.inf, self._crash_now, node_id, self._live[node_id], self._crash_gen)

    def _crash_now(self, node_id: str, node, gen: int) -> None:
        if gen == self._crash_gen and self._live.get(node_id) is node and not self._closed:
            try:
                self._crash(node_id)
            except ValueError:  # removed from the cluster meanwhile: nothing left to crash
                self._live.pop(node_id, None)

    def _restore_durable(self, node_id: str) -> None:
        d = os.path.join(self.root, node_id)
        durable = self._durable.get(node_id, {})
        current = self._read_dir(node_id)
        lost = []
        for name in sorted(set(current) | set(durable)):
            if current.get(name) == durable.get(name):
                continue
            path = os.path.join(d, name)
            if name in durable:
                with open(path, "wb") as f:
                    f.write(durable[name])
            else:
                os.remove(path)
            lost.append(name)
        self._record(node_id, "journal_unflushed_lost",
                     f"files back to the last flush point: {', '.join(lost) or 'nothing was unflushed'}")

    def _tear_dump(self, node_id: str) -> None:
        path = os.path.join(self.root, node_id, DUMP)
        if not os.path.isfile(path):
            return
        with open(path, "rb") as f:
            data = f.read()
        if self._durable.get(node_id, {}).get(DUMP) == data:
            return  # written back already: nothing left to tear
        keep = int(len(data) * self.torn_fraction)
        with open(path, "wb") as f:
            f.write(data[:keep])
        self._record(node_id, "dump_torn", f"dump torn to {keep} of {len(data)} bytes")

    def _round_up(self, n: int) -> int:
        return -(-n // self.block_size) * self.block_size
