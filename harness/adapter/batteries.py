"""pysyncobj's batteries (``pysyncobj.batteries``) made deterministic, and what the harness reads of them.

The batteries are ``SyncObjConsumer`` objects handed to a plain ``SyncObj``.
All but one are pure state machines.  ``ReplLockManager`` is not: its
constructor starts a thread that wakes every 0.1 s (``time.sleep``) and, every
``autoUnlockTime / 4`` seconds of ``time.time()``, proposes ``prolongate`` for
the locks it holds; ``tryAcquire`` and ``isAcquired`` read ``time.time()`` too.
In a simulation that thread and that clock would make every run different.

While a simulated cluster with consumers is alive (:func:`acquire` /
:func:`release`, reference counted), the ``time`` and ``threading`` names
inside ``pysyncobj.batteries`` are replaced:

* ``time.time()`` reads the virtual clock of the cluster whose step is running
  (through ``pysyncobj.syncobj.monotonicTime``, which :mod:`harness.sim.clock`
  routes there), so lock stamps and expiry are virtual seconds;
* ``threading.Thread`` builds a :class:`CooperativeThread`: no OS thread.  Its
  function runs in the caller up to its first ``time.sleep``, and afterwards one
  loop turn (sleep end to next sleep) per :meth:`CooperativeThread.step`, which
  the cluster schedules on its event queue after the slept virtual time.

Everything that knows a battery's private names is here, as for the core in
:mod:`harness.adapter.observe`.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading as _threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pysyncobj.batteries as _batteries
import pysyncobj.syncobj as _syncobj
from pysyncobj import SyncObjConsumer

#: Every battery by its class name.
BATTERIES: Dict[str, type] = {name: getattr(_batteries, name) for name in (
    "ReplCounter", "ReplDict", "ReplList", "ReplSet", "ReplQueue", "ReplPriorityQueue", "ReplLockManager")}

#: ReplLockManager's client calls: not @replicated themselves, they propose through the log and call back.
_LOCK_CLIENT_METHODS = ("tryAcquire", "release")


class _Yield(BaseException):
    """Raised by ``time.sleep`` inside a driven thread to hand control back to the harness.

    A BaseException, so that no ``except Exception`` in pysyncobj catches it.
    """


class CooperativeThread:
    """Stands in for ``threading.Thread`` in the batteries: a background loop run step by step.

    ``start()`` runs the thread function until its first ``time.sleep``;
    each :meth:`step` re-enters the function, lets that first sleep return at
    once and runs until the next one.  Re-entering is faithful for
    ``ReplLockManager._autoAcquireThread`` (0.3.11–0.3.17): what it does before
    its loop's sleep (set an Event, test two flags) has no effect the second
    time.  The one difference: after ``destroy()`` a real thread may finish
    the turn it slept in (one more prolongation), this one stops at once.
    """

    _running: Optional["CooperativeThread"] = None  # the thread whose code is executing

    def __init__(self, target: Callable[..., Any], args: tuple = ()) -> None:
        self._target = target
        self._args = args
        self._sleeps_to_skip = 0
        self.alive = False
        self.wake_after: Optional[float] = None  # length of the sleep the thread is in

    def start(self) -> None:
        if _Patch.started is not None:
            _Patch.started.append(self)
        self.alive = True
        self._run(0)

    def is_alive(self) -> bool:
        return self.alive

    def step(self) -> Optional[float]:
        """Finish the current sleep and run to the next one; its length, or None once the thread ended."""
        if not self.alive:
            return None
        return self._run(1)

    def _run(self, sleeps_to_skip: int) -> Optional[float]:
        self._sleeps_to_skip = sleeps_to_skip
        outer, CooperativeThread._running = CooperativeThread._running, self
        try:
            self._target(*self._args)
        except _Yield:
            return self.wake_after
        except BaseException:
            self.alive = False  # an exception ends a real thread too
            raise
        finally:
            CooperativeThread._running = outer
        self.alive = False
        return None

    def sleep(self, seconds: float) -> None:
        if self._sleeps_to_skip:
            self._sleeps_to_skip -= 1
            return
        self.wake_after = float(seconds)
        raise _Yield


class _VirtualTime:
    """Replaces the ``time`` module inside ``pysyncobj.batteries`` (it calls ``time()`` and ``sleep()``)."""

    @staticmethod
    def time() -> float:
        return _syncobj.monotonicTime()  # the running cluster's virtual clock while clusters are alive

    @staticmethod
    def sleep(seconds: float) -> None:
        thread = CooperativeThread._running
        if thread is None:
            raise RuntimeError("pysyncobj.batteries slept outside a thread the harness drives")
        thread.sleep(seconds)

    def __getattr__(self, name: str):  # a new use of time would be a new nondeterminism worth hearing about
        raise AttributeError(f"pysyncobj.batteries used time.{name}, which the harness does not simulate")


class _CooperativeThreading:
    """Replaces the ``threading`` module inside ``pysyncobj.batteries``."""

    Thread = CooperativeThread
    Event = _threading.Event  # only set() and is_set() are used: nothing ever waits on it
    current_thread = staticmethod(_threading.current_thread)

    def __getattr__(self, name: str):
        raise AttributeError(f"pysyncobj.batteries used threading.{name}, which the harness does not simulate")


class _Patch:
    users = 0
    saved: Optional[tuple] = None
    started: Optional[List[CooperativeThread]] = None  # collecting threads started, see started_threads


def acquire() -> None:
    """Install the virtual ``time`` and cooperative ``threading`` (one call per live cluster)."""
    if _Patch.users == 0:
        _Patch.saved = (_batteries.time, _batteries.threading)
        _batteries.time, _batteries.threading = _VirtualTime(), _CooperativeThreading()
    _Patch.users += 1


def release() -> None:
    """Undo one :func:`acquire`; the last one gives the batteries their own ``time`` and ``threading``."""
    if _Patch.users <= 0:
        return
    _Patch.users -= 1
    if _Patch.users == 0:
        _batteries.time, _batteries.threading = _Patch.saved
        _Patch.saved = None


def patched() -> bool:
    return _Patch.users > 0


@contextlib.contextmanager
def started_threads() -> Iterator[List[CooperativeThread]]:
    """Collect the :class:`CooperativeThread` objects started inside the block (e.g. by a constructor)."""
    outer, _Patch.started = _Patch.started, []
    try:
        yield _Patch.started
    finally:
        _Patch.started = outer


def is_consumer(obj: Any) -> bool:
    """What ``SyncObj(consumers=...)`` accepts: a SyncObjConsumer, or an object with ``_consumer()``
    (ReplLockManager)."""
    return isinstance(obj, SyncObjConsumer) or (
        not isinstance(obj, type) and callable(getattr(obj, "_consumer", None)))


def check_deterministic(obj: Any, name: str) -> None:
    """ValueError if ``obj`` would make runs differ: a ReplLockManager with the default selfID,
    which embeds ``id(self)`` (and the host name and pid)."""
    if isinstance(obj, _batteries.ReplLockManager):
        default = "%s:%d:%d" % (socket.gethostname(), os.getpid(), id(obj))
        if obj._ReplLockManager__selfID == default:
            raise ValueError(f"consumer {name!r}: a ReplLockManager in a simulated cluster needs an explicit "
                             f"selfID (the default embeds id(self), so runs would not replay)")


def client_methods(obj: Any) -> List[str]:
    """Names a client can call with a ``callback``: the @replicated methods, or ReplLockManager's wrappers."""
    if isinstance(obj, _batteries.ReplLockManager):
        return list(_LOCK_CLIENT_METHODS)
    return sorted(name for name in dir(obj) if getattr(getattr(obj, name, None), "replicated", False)
                  and getattr(obj, name).origName == name)


def state(obj: Any) -> Dict[str, Any]:
    """The replicated state of one consumer, as pysyncobj puts it into a snapshot."""
    consumer = obj._consumer() if isinstance(obj, _batteries.ReplLockManager) else obj
    return consumer._serialize()


# --- ReplLockManager ---------------------------------------------------------------------------
def lock_table(manager) -> Dict[Any, Tuple[str, float]]:
    """The replicated lock table of one node: lock id -> (holder's selfID, holder's last stamp)."""
    return dict(manager._consumer()._ReplLockManagerImpl__locks)


#: Called for every lock whose entry a lock command changed, with
#: (command, issuing client, its stamp or None, lock, entry before, entry after); an entry is (holder, stamp).
LockCommandObserver = Callable[[str, str, Optional[float], Any, Optional[Tuple[str, float]],
                                Optional[Tuple[str, float]]], None]

#: Positional arguments of _ReplLockManagerImpl's replicated methods.
_LOCK_COMMAND_ARGS = {"acquire": ("lock", "client", "stamp"), "prolongate": ("client", "stamp"),
                      "release": ("lock", "client")}


def watch_lock_commands(node, manager, observer: LockCommandObserver) -> None:
    """Call ``observer`` for every change a committed ``acquire``/``prolongate``/``release`` makes to
    ``manager``'s lock table when ``node`` applies it (journal replay included).

    The wrappers go into the node's ``_idToMethod`` table, which pysyncobj builds once in
    ``SyncObj.__init__`` and keeps out of snapshots; the methods themselves run unchanged.
    """
    impl = manager._consumer()

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        command = method.origName
        names = _LOCK_COMMAND_ARGS[command]

        def applied(*args: Any, **kwargs: Any) -> Any:
            before = dict(impl._ReplLockManagerImpl__locks)
            result = method(*args, **kwargs)
            after = impl._ReplLockManagerImpl__locks
            fields = dict(zip(names, args))
            for lock in sorted(set(before) | set(after), key=repr):
                if before.get(lock) != after.get(lock):
                    observer(command, fields["client"], fields.get("stamp"), lock,
                             before.get(lock), after.get(lock))
            return result

        return applied

    table = node._idToMethod
    for func_id in sorted(table):
        if getattr(table[func_id], "__self__", None) is impl:
            table[func_id] = wrap(table[func_id])
