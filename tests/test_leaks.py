"""Nothing left behind: node directories, file descriptors and threads, after passing, failing and killed runs.

Node directories live in RAM (/dev/shm) during a run, so a campaign that leaks one per failing
example fills memory.  Each run below gets its own temporary directory (``TMPDIR``), so what it
leaves is counted exactly and other processes on the machine cannot disturb the count.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness import Cluster
from harness.util import owned_dir, reap_orphans

ROOT = Path(__file__).resolve().parents[1]

_FAILING_MACHINE = textwrap.dedent("""
    from cli_machines import InjectedBugRaft
    from hypothesis import settings, Phase
    TestFails = InjectedBugRaft.TestCase
    TestFails.settings = settings(max_examples=20, stateful_step_count=8, database=None, deadline=None,
                                  phases=[Phase.generate, Phase.shrink])
""")

#: So that under xdist each worker has a failing machine to run when -x stops the run.
_SECOND_FAILING_TEST = textwrap.dedent("""
    class TestFailsToo(TestFails):
        pass
""")

_SLOW_MACHINE = textwrap.dedent("""
    from cli_machines import QuietRaft
    from hypothesis import settings, Phase
    TestRuns = QuietRaft.TestCase
    TestRuns.settings = settings(max_examples=10_000, stateful_step_count=50, database=None, deadline=None,
                                 phases=[Phase.generate])
""")


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFT_HARNESS_")}
    env.update(TMPDIR=str(tmp), PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return env


def _left(tmp: Path) -> list:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("raft-harness-") and p.name != "raft-harness-ports")


def _project(tmp_path: Path, source: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_machine.py").write_text(source)
    return project


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_failing_shrinking_run_leaves_no_node_directory(tmp_path, workers):
    """``-x`` stops the run at the first failure; under xdist that interrupts the other worker too."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    project = _project(tmp_path, _FAILING_MACHINE + _SECOND_FAILING_TEST)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *workers, str(project)],
                         cwd=project, env=_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=300)
    # it did fail (and shrank); xdist reports the stop as an interruption
    assert run.returncode == (2 if workers else 1), run.stdout[-2000:]
    assert "injected_bug" in run.stdout
    assert _left(tmp) == []


def test_a_killed_run_s_directories_are_reaped_by_the_next_process(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    project = _project(tmp_path, _SLOW_MACHINE)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
                            cwd=project, env=_env(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _left(tmp) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _left(tmp), "the run never created a node directory"
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup runs: as if xdist, the OOM killer or a power cut took it
        proc.wait(timeout=30)
    orphans = _left(tmp)
    assert orphans and all(name.startswith(f"raft-harness-{proc.pid}-") for name in orphans)
    subprocess.run([sys.executable, "-c", "from harness import Cluster\nwith Cluster(1, seed=0): pass"],
                   env=_env(tmp), check=True, timeout=120)
    assert _left(tmp) == []


def test_reaping_spares_live_processes_and_foreign_names(tmp_path):
    mine = owned_dir(str(tmp_path))
    foreign = tmp_path / "raft-harness-ports"
    foreign.mkdir()
    old_style = tmp_path / "raft-harness-12345678"  # no pid separator: not ours to judge
    old_style.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"raft-harness-{dead.pid}-x"
    orphan.mkdir()
    assert reap_orphans(str(tmp_path)) == 1
    assert mine.exists() and foreign.exists() and old_style.exists() and not orphan.exists()


def test_closing_clusters_releases_files_and_threads(tmp_path):
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with Cluster(3, seed=0, base_dir=str(tmp_path)) as c:  # warm up imports and caches
        c.wait_leader()
    before_fds, before_threads = fds(), threading.active_count()
    for seed in range(3):
        c = Cluster(3, seed=seed, base_dir=str(tmp_path))
        c.wait_leader()
        c.must_put("k", seed)
        c.force_snapshot(c.leader())
        c.crash(c.node_ids[0])
        c.restart(c.node_ids[0])
        c.run_for(2)
        c.close()
    assert fds() == before_fds
    assert threading.active_count() == before_threads
    assert list(tmp_path.iterdir()) == []
