"""harness.util: alloc_port, temp_dir, retry and eventually."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import Cluster
from harness.util import alloc_port, eventually, retry, temp_dir

ROOT = Path(__file__).resolve().parents[1]


# --- alloc_port -------------------------------------------------------------------------------

def test_alloc_port_distinct_and_bindable():
    """100 calls give 100 different ports, each of which can be bound right away."""
    ports = [alloc_port() for _ in range(100)]
    assert len(set(ports)) == 100
    assert all(1024 <= p <= 65535 for p in ports)
    for p in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", p))


def test_alloc_port_sweeps_expired_claims_once_per_process(tmp_path, monkeypatch):
    """A claim is otherwise dropped only when the kernel offers its port again: files pile up."""
    from harness import util

    monkeypatch.setattr(util, "_PORT_LOCKS", tmp_path)
    monkeypatch.setattr(util, "_swept", False)
    expired, fresh = tmp_path / "1", tmp_path / "2"
    for claim in (expired, fresh):
        claim.write_text("123")
    old = time.time() - util._PORT_LOCK_TTL - 60
    os.utime(expired, (old, old))
    port = alloc_port()
    assert not expired.exists() and fresh.exists() and (tmp_path / str(port)).exists()
    os.utime(fresh, (old, old))
    alloc_port()
    assert fresh.exists()  # swept once per process, not on every call


_ALLOC = "import json; from harness.util import alloc_port; print(json.dumps([alloc_port() for _ in range(50)]))"


def test_alloc_port_distinct_across_processes():
    """Two processes allocating 50 ports each, at the same time, never get the same port."""
    procs = [subprocess.Popen([sys.executable, "-c", _ALLOC], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    a, b = results
    assert len(set(a)) == 50 and len(set(b)) == 50
    assert not set(a) & set(b)


# --- temp_dir ---------------------------------------------------------------------------------

def test_temp_dir_created_and_removed_with_contents():
    """temp_dir yields an existing empty directory and removes it, with its contents, on exit."""
    with temp_dir(prefix="util-test-") as d:
        assert d.is_dir() and d.name.startswith("util-test-") and not any(d.iterdir())
        (d / "sub").mkdir()
        (d / "sub" / "f.txt").write_text("x")
    assert not d.exists()


def test_temp_dir_removed_on_exception():
    """The directory goes away even when the block raises, and the exception propagates."""
    with pytest.raises(KeyError):
        with temp_dir() as d:
            (d / "f").write_text("x")
            raise KeyError("boom")
    assert not d.exists()


# --- retry ------------------------------------------------------------------------------------

class Flaky:
    """Raises ``failures`` times (with distinct messages), then returns ``value``."""

    def __init__(self, failures: int, value="done", exc=OSError) -> None:
        self.failures, self.value, self.exc, self.calls = failures, value, exc, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"failure {self.calls}")
        return self.value


def test_retry_returns_after_failures_within_attempts():
    """fn failing twice then succeeding is called three times and its value returned."""
    fn = Flaky(2)
    assert retry(fn, attempts=3, backoff=0) == "done"
    assert fn.calls == 3


def test_retry_reraises_the_last_error():
    """When every attempt fails, the error of the last attempt is the one raised."""
    fn = Flaky(10)
    with pytest.raises(OSError, match="failure 4"):
        retry(fn, attempts=4, backoff=0)
    assert fn.calls == 4


def test_retry_does_not_catch_other_exceptions():
    """An exception outside ``exceptions`` propagates at once, without further attempts."""
    fn = Flaky(5, exc=KeyError)
    with pytest.raises(KeyError):
        retry(fn, attempts=5, backoff=0, exceptions=(OSError,))
    assert fn.calls == 1


def test_retry_virtual_backoff_advances_cluster_time(monkeypatch):
    """With cluster=..., the waits are virtual: cluster.now advances by exactly the backoff sum
    (0.1 + 0.2 + 0.4 for four failed attempts, none after the last), and no wall sleep happens."""
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("retry slept in wall time"))
    with Cluster(nodes=1, seed=0) as c:
        start = c.now
        fn = Flaky(10)
        with pytest.raises(OSError, match="failure 4"):
            retry(fn, attempts=4, backoff=0.1, factor=2.0, cluster=c)
        assert fn.calls == 4
        assert c.now - start == pytest.approx(0.7, abs=1e-3)

        start = c.now
        assert retry(Flaky(1), attempts=3, backoff=0.5, cluster=c) == "done"
        assert c.now - start == pytest.approx(0.5, abs=1e-3)


def test_retry_wall_backoff_sleeps_the_schedule(monkeypatch):
    """Without a cluster, retry sleeps backoff, backoff*factor, ... between attempts."""
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    with pytest.raises(OSError):
        retry(Flaky(10), attempts=4, backoff=0.1, factor=3.0)
    assert slept == pytest.approx([0.1, 0.3, 0.9])


def test_retry_rejects_zero_attempts():
    """attempts=0 is a ValueError naming attempts, and fn is never called."""
    fn = Flaky(0)
    with pytest.raises(ValueError, match="attempts must be an int >= 1"):
        retry(fn, attempts=0)
    assert fn.calls == 0


# --- eventually -------------------------------------------------------------------------------

def test_eventually_virtual_returns_when_predicate_holds():
    """In virtual mode eventually runs the cluster until the predicate holds (a leader here)."""
    with Cluster(nodes=3, seed=1) as c:
        assert c.leader() is None
        eventually(lambda: c.leader() is not None, 30, cluster=c)
        assert c.leader() is not None
        assert 0 < c.now < 30


def test_eventually_virtual_times_out_after_virtual_timeout(monkeypatch):
    """A predicate that never holds: TimeoutError (with the message) after exactly ``timeout``
    virtual seconds, without any wall-clock sleeping."""
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("eventually slept in wall time"))
    with Cluster(nodes=1, seed=0) as c:
        start = c.now
        with pytest.raises(TimeoutError, match="never true"):
            eventually(lambda: False, 4, cluster=c, message="never true")
        assert c.now - start == pytest.approx(4, abs=1e-3)
        with pytest.raises(TimeoutError, match="within 1 virtual seconds"):
            eventually(lambda: False, 1, cluster=c)


def test_eventually_wall_polls_until_true():
    """In wall mode the predicate is polled until it holds."""
    calls = []

    def pred():
        calls.append(1)
        return len(calls) >= 3
    eventually(pred, timeout=30, interval=0.001)
    assert len(calls) == 3


def test_eventually_wall_times_out():
    """In wall mode a predicate that never holds raises TimeoutError once the timeout passes."""
    calls = []
    with pytest.raises(TimeoutError, match="within 0.05 seconds"):
        eventually(lambda: calls.append(1) and False, timeout=0.05, interval=0.001)
    assert len(calls) >= 1
