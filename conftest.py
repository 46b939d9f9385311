"""Hypothesis profiles and pytest options shared by ``properties/`` and ``tests/``.

Profiles (choose with ``--hypothesis-profile=NAME``):

``dev``     the default: a quick look, failures saved to ``.hypothesis/``.
``ci``      bounded and reproducible: derandomized (so no database), used by
            ``.ci/run``.  It replaces Hypothesis' own ``ci`` profile, which Hypothesis
            loads by itself when ``CI`` is set, so the bounds are ours.
``fuzz``    long campaigns.
``bench``   like ``ci`` but big enough to time, and no shrinking (bench/bench_properties.py).
``replay``  only re-runs examples saved in the database.

``RAFT_HARNESS_DB`` picks the example database: a directory path (default
``.hypothesis/examples``) or ``redis://host:port/db`` for one shared by many machines.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase


def _database():
    where = os.environ.get("RAFT_HARNESS_DB", os.path.join(".hypothesis", "examples"))
    if where.startswith("redis://"):
        from hypothesis.extra.redis import RedisExampleDatabase
        import redis

        return RedisExampleDatabase(redis.Redis.from_url(where), key_prefix=b"raft-harness:")
    return DirectoryBasedExampleDatabase(where)


# No explain phase: on a state machine it re-runs the failing example hundreds of times
# (minutes per failure) to list covered lines; the report already says what broke and where.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
_common = dict(deadline=None, print_blob=True, database=_database(), phases=_PHASES,
               suppress_health_check=list(HealthCheck))
settings.register_profile("dev", max_examples=25, stateful_step_count=30, **_common)
settings.register_profile("ci", max_examples=60, stateful_step_count=40, derandomize=True,
                          **{**_common, "database": None})
settings.register_profile("bench", max_examples=300, stateful_step_count=40, derandomize=True,
                          **{**_common, "database": None, "phases": [Phase.generate]})
settings.register_profile("fuzz", max_examples=20_000, stateful_step_count=80, **_common)
settings.register_profile("replay", max_examples=1, **{**_common, "phases": [Phase.explicit, Phase.reuse]})
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser):
    parser.addoption("--network", choices=("fifo", "unreliable", "all"), default="fifo",
                     help="which channel model's state machines to run (default: fifo, pysyncobj's TCP contract)")
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")
    parser.addoption("--storage", action="store_true", default=False,
                     help="also run the storage-fault machines (they break pysyncobj by design)")
    parser.addoption("--runsoak", action="store_true", default=False,
                     help="also run the soak tests over real sockets (marked soak)")
    parser.addoption("--known-fixes", action="store_true", default=False,
                     help="run the state machines on pysyncobj with the fixes for findings already made "
                          "(harness.adapter.fixes.KNOWN_FIXES): hunt for new bugs instead of rediscovering those")


@pytest.hookimpl(trylast=True)  # after Hypothesis' plugin has loaded --hypothesis-profile
def pytest_configure(config):
    """Patched runs keep their examples apart: see harness.fuzz.database."""
    current = settings()
    if config.getoption("--known-fixes") and current.database is not None:
        from harness.fuzz.database import KeyPrefixedDatabase

        settings.register_profile("known-fixes", parent=current,
                                  database=KeyPrefixedDatabase(current.database, b"known-fixes:"))
        settings.load_profile("known-fixes")


@pytest.fixture(autouse=True)
def _known_fixes(request):
    """With --known-fixes, every test of properties/ runs on patched pysyncobj (tests/ never does:
    its finding tests must keep failing on the unmodified releases)."""
    if request.config.getoption("--known-fixes"):
        from harness.adapter.fixes import KNOWN_FIXES
        from harness.adapter.patching import inject
        from harness.fuzz.selection import known_fixes_apply_to

        if known_fixes_apply_to(request.node.path, request.config.rootpath):
            with inject(*KNOWN_FIXES):
                yield
            return
    yield


def pytest_collection_modifyitems(config, items):
    network = config.getoption("--network")
    runslow = config.getoption("--runslow")
    runsoak = config.getoption("--runsoak")
    # Machines of the other channel model are deselected, not skipped: a skipped item still takes
    # a pytest-xdist slot, which can put two shards of one machine on the same worker.
    keep, drop = [], []
    for item in items:
        if ("unreliable" in item.keywords and network == "fifo") or ("fifo" in item.keywords and network == "unreliable"):
            drop.append(item)
        else:
            keep.append(item)
        if "slow" in item.keywords and not runslow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --runslow"))
        if "soak" in item.keywords and not runsoak:
            item.add_marker(pytest.mark.skip(reason="soak: run with --runsoak"))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
