"""TiKV-style test utilities: free ports, temp dirs, retry and eventually, and the check of a duration.

``retry`` and ``eventually`` wait in virtual time when given a simulated
cluster (no wall clock, so replays stay exact) and in wall time otherwise.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Tuple, Type, TypeVar

if TYPE_CHECKING:  # harness.contract imports this module
    from harness.contract import ClusterLike

from harness.environment import NODE_DIR_ENV

T = TypeVar("T")

_PORT_LOCKS = Path(tempfile.gettempdir()) / "raft-harness-ports"
_PORT_LOCK_TTL = 3600.0


def alloc_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host``, never handed out twice while its claim is fresh.

    The kernel's choice for ``bind(port=0)`` is free now but may be handed to
    another pytest-xdist worker before this one binds it; an exclusive lock
    file per port, shared by all processes on the machine, rules that out.
    """
    _PORT_LOCKS.mkdir(exist_ok=True)
    if not _swept:
        _sweep_expired_port_claims()
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        lock = _PORT_LOCKS / str(port)
        _drop_if_expired(lock, time.time())
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError as e:
            if e.errno == errno.EEXIST:
                continue
            raise
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return port
    raise RuntimeError("alloc_port: no free port found after 200 attempts")


_swept = False


def _sweep_expired_port_claims() -> None:
    """Delete the claims older than their time to live, once per process.  A claim is otherwise only
    dropped when the kernel offers the same port again, so claim files pile up run after run."""
    global _swept
    _swept = True
    now = time.time()
    for lock in _PORT_LOCKS.iterdir():
        _drop_if_expired(lock, now)


def _drop_if_expired(lock: Path, now: float) -> None:
    try:
        if now - lock.stat().st_mtime > _PORT_LOCK_TTL:
            lock.unlink()
    except FileNotFoundError:
        pass  # never claimed, or another process dropped it first


@contextlib.contextmanager
def temp_dir(prefix: str = "raft-harness-") -> Iterator[Path]:
    """A fresh directory, removed with everything in it on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_OWNED = "raft-harness-"
_reaped: set = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def reap_orphans(base: Optional[str] = None) -> int:
    """Remove node directories (``raft-harness-<pid>-*``) left in ``base`` by processes that are gone.

    A pytest-xdist worker stopped by ``-x``, a killed campaign or a crash never runs its cleanup; the
    next harness process on the machine takes their directories away (they live in RAM under
    /dev/shm).  Returns how many it removed.
    """
    base = base or tempfile.gettempdir()
    removed = 0
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            pid_text, sep, _ = name[len(_OWNED):].partition("-") if name.startswith(_OWNED) else ("", "", "")
            if sep and pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
                removed += 1
    return removed


def node_dir_base() -> Optional[str]:
    """A memory-backed temp dir when the machine has one: the journal, its metadata and the
    dumps are real files either way (a simulated crash is a process crash, not a power cut),
    but pysyncobj rewrites its metadata file every virtual second and disk renames dominate."""
    explicit = os.environ.get(NODE_DIR_ENV)
    if explicit:
        return explicit  # e.g. the CLI's scratch dir, removed even if workers are killed
    if os.environ.get("TMPDIR"):
        return None  # the user chose where temporary files go
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def owned_dir(base: Optional[str] = None) -> Path:
    """A fresh private directory named after this process, so that :func:`reap_orphans` can tell
    whether its owner is still alive; the first call per ``base`` reaps the orphans there."""
    key = base or tempfile.gettempdir()
    if key not in _reaped:
        _reaped.add(key)
        reap_orphans(key)
    return Path(tempfile.mkdtemp(prefix=f"{_OWNED}{os.getpid()}-", dir=base))


def check_seconds(name: str, value: Any, unit: str = "seconds", positive: bool = False) -> float:
    """``value`` as a float, or ValueError naming ``name`` unless it is a finite number of ``unit``
    >= 0 (> 0 if ``positive``); booleans are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'>' if positive else '>='} 0 {unit}, got {value!r}")
    return float(value)


def _sleeper(cluster: Optional[ClusterLike]) -> Callable[[float], None]:
    return cluster.run_for if cluster is not None else time.sleep


def retry(fn: Callable[[], T], *, attempts: int = 3, backoff: float = 0.1, factor: float = 2.0,
          exceptions: Tuple[Type[BaseException], ...] = (Exception,),
          cluster: Optional[ClusterLike] = None) -> T:
    """Call ``fn`` until it returns without raising one of ``exceptions``.

    Waits ``backoff``, then ``backoff * factor``, … between attempts; the last
    failure is re-raised.  With ``cluster`` the waits are virtual seconds.
    """
    if not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
    if backoff < 0 or factor < 1:
        raise ValueError(f"backoff must be >= 0 and factor >= 1, got backoff={backoff!r} factor={factor!r}")
    sleep = _sleeper(cluster)
    delay = backoff
    for attempt in range(attempts):
        try:
            return fn()
        except exceptions:
            if attempt == attempts - 1:
                raise
        sleep(delay)
        delay *= factor
    raise AssertionError("unreachable")


def eventually(predicate: Callable[[], bool], timeout: float, *, cluster: Optional[ClusterLike] = None,
               interval: float = 0.05, message: Optional[str] = None) -> None:
    """Wait until ``predicate()`` is true, or raise ``TimeoutError`` after ``timeout`` seconds.

    With ``cluster`` time is virtual and the predicate is checked after every
    simulated event; otherwise it is polled every ``interval`` wall seconds.
    """
    check_seconds("timeout", timeout)
    if cluster is not None:
        if not cluster.run_until(predicate, timeout):
            raise TimeoutError(message or f"condition not reached within {timeout} virtual seconds")
        return
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(message or f"condition not reached within {timeout} seconds")
        time.sleep(interval)
