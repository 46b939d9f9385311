"""pysyncobj's own log output, kept per simulated cluster and tagged with the node that wrote it.

A failing run makes pysyncobj log hundreds of WARNING and CRITICAL lines.  Left
alone they reach the root logger, so pytest prints them under "Captured log":
every example's lines mixed together, none saying which node wrote it.  While a
:class:`~harness.sim.cluster.Cluster` is open, every record pysyncobj writes
while the cluster runs one of its nodes goes into that cluster's
:class:`PysyncobjLog` instead (bounded, tagged with virtual time and node id),
and the failure report and ``counterexample.json`` show it.  Records written
outside a node of an open cluster (another thread, a real-socket cluster, no
cluster at all) go on to the usual handlers untouched.

pysyncobj logs in two ways: from 0.3.12 on through loggers named after its
modules (``pysyncobj.syncobj``, ``pysyncobj.serializer``, …), 0.3.11 through
the root logger's module functions (``logging.warning``).  One
:class:`logging.Filter` catches both: attached to every ``pysyncobj.*``
logger, and to the root logger for records whose source file is in
pysyncobj's package (a logger's own filters see only the records created on
it, so the root filter never sees other libraries' propagated records).  The
filters are attached while at least one cluster is open and removed when the
last one closes.

A CRITICAL record is evidence in itself: "truncating already-applied log
entries" means a node rolls back entries its state machine has applied.  Each
one is kept apart from the bounded tail and handed to :attr:`PysyncobjLog.on_critical`
(the fuzzing machine counts it as an event of the example).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re
import threading
import traceback
from typing import Any, Callable, Deque, Dict, List, Optional

import pysyncobj

#: Lines of one cluster's log kept (the most recent ones), and CRITICAL lines kept besides.
MAX_LINES = 300
MAX_CRITICAL = 50

_PACKAGE_DIR = os.path.dirname(os.path.abspath(pysyncobj.__file__)) + os.sep


@dataclasses.dataclass(frozen=True)
class LogLine:
    """One record pysyncobj logged: virtual time, the node it ran for, level name, message."""

    time: float
    node: str
    level: str
    message: str
    #: The record's format string before its arguments are filled in (stable across runs).
    template: str
    #: The exception logged with it (``logger.exception``), as its last traceback line; "" if none.
    error: str = ""

    def __str__(self) -> str:
        error = f" ({self.error})" if self.error else ""
        return f"t={self.time:.4f} {self.node:<3} {self.level:<8} {self.message}{error}"

    @property
    def gist(self) -> str:
        """The message up to its first number or formatted value: a name to count events by."""
        return re.split(r"%|\d", self.template, maxsplit=1)[0].strip(" :(-") or self.template

    def to_json(self) -> Dict[str, Any]:
        doc = {"t": self.time, "node": self.node, "level": self.level, "message": self.message}
        if self.error:
            doc["error"] = self.error
        return doc


class PysyncobjLog:
    """The log lines of one cluster's nodes.  ``running()`` names the node whose pysyncobj code is
    executing (None when none is: the record is not this cluster's), ``now()`` is its virtual time."""

    def __init__(self, running: Callable[[], Optional[str]], now: Callable[[], float]) -> None:
        self._running = running
        self._now = now
        self._thread = threading.get_ident()  # a simulated cluster runs its nodes in the thread that made it
        self.lines: Deque[LogLine] = collections.deque(maxlen=MAX_LINES)
        self.critical: List[LogLine] = []
        #: Lines logged in all, including those no longer kept in :attr:`lines`; and CRITICAL ones.
        self.total = 0
        self.critical_total = 0
        #: Called with each CRITICAL line as it is logged.
        self.on_critical: Optional[Callable[[LogLine], None]] = None
        self._open = False

    def open(self) -> None:
        """Start taking this cluster's records (the first open log attaches the filters)."""
        if not self._open:
            self._open = True
            _attach(self)

    def close(self) -> None:
        """Stop taking records; what was taken stays readable.  Idempotent."""
        if self._open:
            self._open = False
            _detach(self)

    @property
    def dropped(self) -> int:
        """Lines logged but no longer kept (older than the last :data:`MAX_LINES`)."""
        return self.total - len(self.lines)

    def messages(self) -> List[str]:
        """The kept lines' messages, oldest first."""
        return [line.message for line in self.lines]

    def to_json(self) -> Dict[str, Any]:
        return {"lines": [line.to_json() for line in self.lines], "dropped": self.dropped,
                "critical": [line.to_json() for line in self.critical], "critical_total": self.critical_total}

    def take(self, record: logging.LogRecord) -> bool:
        """Keep ``record`` if this cluster is running one of its nodes in the record's thread."""
        if record.thread != self._thread:
            return False
        node = self._running()
        if node is None:
            return False
        error = ""
        if record.exc_info and record.exc_info[0] is not None:
            error = traceback.format_exception_only(*record.exc_info[:2])[-1].strip()
        line = LogLine(self._now(), node, record.levelname, record.getMessage(), str(record.msg), error)
        self.lines.append(line)
        self.total += 1
        if record.levelno >= logging.CRITICAL:
            self.critical_total += 1
            if len(self.critical) < MAX_CRITICAL:
                self.critical.append(line)
            if self.on_critical is not None:
                self.on_critical(line)
        return True


class _Route(logging.Filter):
    """Hands pysyncobj's records to the open cluster running the node that wrote them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and not record.pathname.startswith(_PACKAGE_DIR):
            return True  # someone else's logging.warning()
        for log in reversed(_OPEN):
            if log.take(record):
                return False  # kept: no handler sees it
        return True


_ROUTE = _Route()
_OPEN: List[PysyncobjLog] = []
_LOCK = threading.Lock()
_attached: List[logging.Logger] = []


def _pysyncobj_loggers() -> List[logging.Logger]:
    loggers = [v for k, v in sorted(logging.root.manager.loggerDict.items())
               if k.startswith("pysyncobj.") and isinstance(v, logging.Logger)]
    return loggers + [logging.getLogger()]


def _attach(log: PysyncobjLog) -> None:
    with _LOCK:
        if not _OPEN:
            _attached[:] = _pysyncobj_loggers()
            for logger in _attached:
                logger.addFilter(_ROUTE)
        _OPEN.append(log)


def _detach(log: PysyncobjLog) -> None:
    with _LOCK:
        _OPEN.remove(log)
        if not _OPEN:
            for logger in _attached:
                logger.removeFilter(_ROUTE)
            _attached.clear()


def attached() -> bool:
    """Whether the filters are in place (some cluster's log is open)."""
    return bool(_attached)
