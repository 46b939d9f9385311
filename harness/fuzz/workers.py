"""pytest plugin for the workers of ``raft-harness fuzz`` (loaded with ``-p harness.fuzz.workers``).

* ``RAFT_HARNESS_REPORT_BASE=DIR``: before each test, ``RAFT_HARNESS_REPORT``
  is pointed at ``DIR/<test>``, so every test (one per shard and machine) has
  its own counterexample directory whichever xdist worker runs it; a failed
  test also leaves ``outcome.json`` and ``failure.txt`` (pytest's report,
  with Hypothesis' steps and ``@reproduce_failure`` blob) there.
* ``RAFT_HARNESS_SEED=S``: each test runs with a Hypothesis seed derived from
  ``S`` and the test's id (what ``--hypothesis-seed`` does, but one seed per
  shard: a single global seed would make every shard of a machine generate
  the same examples).  Like ``--hypothesis-seed`` this bypasses the example
  database.
"""
from __future__ import annotations

import json
import os
import re
import zlib

import pytest

from harness.environment import CAMPAIGN_SEED_ENV, REPORT_BASE_ENV, REPORT_ENV


def report_dir_name(nodeid: str) -> str:
    """A directory name for one test: ``properties/test_raft.py::TestFifoRaftShard0::runTest`` ->
    ``test_raft.TestFifoRaftShard0``."""
    parts = [p for p in nodeid.split("::") if p != "runTest"]
    if parts:
        parts[0] = os.path.splitext(os.path.basename(parts[0]))[0]
    name = ".".join(parts) or "test"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:150]


def seed_for(seed: int, nodeid: str) -> int:
    """The Hypothesis seed of one test in a campaign seeded with ``seed``."""
    return (int(seed) << 32) | zlib.crc32(nodeid.encode())


def _report_dir(item) -> str:
    return os.path.join(os.environ[REPORT_BASE_ENV], report_dir_name(item.nodeid))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if os.environ.get(REPORT_BASE_ENV):
        os.environ[REPORT_ENV] = _report_dir(item)
    seed = os.environ.get(CAMPAIGN_SEED_ENV)
    if seed:
        import hypothesis.core

        hypothesis.core.global_force_seed = seed_for(int(seed), item.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    # Runs in the process that ran the test (and again in the xdist controller: harmless, same files).
    if not os.environ.get(REPORT_BASE_ENV) or not report.failed:
        return
    directory = os.path.join(os.environ[REPORT_BASE_ENV], report_dir_name(report.nodeid))
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "failure.txt"), "w") as f:
        f.write(str(report.longrepr) + "\n")
    path = os.path.join(directory, "outcome.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                   "duration": report.duration}, f, sort_keys=True)
    os.replace(path + ".tmp", path)
