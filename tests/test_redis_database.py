"""Several machines pool their failures through one Redis example database.

A real ``redis-server`` runs on a free loopback port for the test.  Process A
is a fuzz campaign (``python -m harness fuzz``) on a machine with an injected
bug, with ``--database redis://...``: it finds, shrinks and saves the failure.
Process B is a separate pytest process started in a fresh, empty directory
with the ``replay`` profile (phases explicit and reuse only: nothing is
generated) and ``RAFT_HARNESS_DB`` at the same Redis database: it fails with
A's shrunk counterexample, step for step.  The control, the same process
against another (empty) Redis database, passes: B's failure came out of Redis.

Skipped only when no ``redis-server`` binary is installed (Debian:
``apt-get install -y redis-server``); the ``redis`` package is part of the test
extras.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.util import alloc_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MACHINE = f"{HERE / 'cli_machines.py'}::TestInjectedBug"
PREFIX = b"raft-harness:"  # conftest.py's key prefix


@pytest.fixture
def redis_server(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary installed (Debian: apt-get install -y redis-server)")
    import redis

    port = alloc_port()
    data = tmp_path / "redis-data"
    data.mkdir()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(data), "--daemonize", "no"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                    pytest.fail(f"redis-server did not come up on port {port}: {out[-2000:]}")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}", client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFT_HARNESS_") and k != "CI"}
    env.update(extra)
    return env


def _replay_process(cwd: Path, database: str, report: Path):
    """A fresh pytest process in ``cwd`` that only replays what the database holds (no generation)."""
    cwd.mkdir()
    return subprocess.run(
        [sys.executable, "-m", "pytest", MACHINE, f"--rootdir={ROOT}", "-p", "no:cacheprovider", "-p", "no:logging",
         "--hypothesis-profile=replay", "-q", "--color=no"],
        cwd=str(cwd), env=_env(RAFT_HARNESS_DB=database, RAFT_HARNESS_REPORT=str(report)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def _codes(path: Path):
    return [s["code"] for s in json.loads(path.read_text())["steps"]]


def test_two_processes_share_a_failure_through_redis(redis_server, tmp_path):
    url, client = redis_server
    shared, empty = f"{url}/0", f"{url}/1"

    # A: a fuzz campaign finds the injected bug and saves it to Redis
    a_dir = tmp_path / "a"
    a_dir.mkdir()
    a = subprocess.run([sys.executable, "-m", "harness", "fuzz", "--budget", "2m", "--workers", "1",
                        "--properties", MACHINE, "--database", shared, "--report", str(a_dir / "report")],
                       cwd=str(a_dir), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=400)
    assert a.returncode == 1, a.stdout
    a_json = a_dir / "report" / "cli_machines.TestInjectedBug" / "counterexample.json"
    assert a_json.exists(), a.stdout
    keys = client.keys(PREFIX + b"*")
    assert keys, "process A saved nothing to Redis"

    # B: another process, elsewhere, generating nothing, reproduces A's failure from Redis
    b = _replay_process(tmp_path / "b", shared, tmp_path / "b-report")
    assert b.returncode == 1, b.stdout
    assert "injected_bug" in b.stdout
    assert _codes(tmp_path / "b-report" / "counterexample.json") == _codes(a_json)
    assert not (tmp_path / "b" / ".hypothesis" / "examples").exists()

    # control: the same process against an empty database finds nothing (the replay profile cannot generate)
    c = _replay_process(tmp_path / "c", empty, tmp_path / "c-report")
    assert c.returncode == 0, c.stdout
    assert not (tmp_path / "c-report").exists()

