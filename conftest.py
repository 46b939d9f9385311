"""pytest options shared by ``properties/`` and ``tests/``; the Hypothesis profiles are the library's
(:mod:`harness.fuzz.profiles`: ``raft-dev`` by default, ``raft-ci`` under CI, and their old unprefixed
names ``dev``, ``ci``, ``fuzz``, ``bench``, ``replay``)."""
from __future__ import annotations

import pytest
from hypothesis import settings

from harness.fuzz import profiles

profiles.register()
settings.load_profile(profiles.default_profile())


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
