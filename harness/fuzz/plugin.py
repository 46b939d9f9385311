"""raft-harness' pytest plugin: what a pysyncobj project needs to test its cluster with the harness.

pytest loads it in every project that has raft-harness installed (entry point
``pytest11: raft_harness``; ``-p no:raft_harness`` switches it off), so it must
cost nothing where it is not used: importing it imports neither pysyncobj nor
the simulator (only Hypothesis, whose own plugin pytest loads anyway); the
``cluster`` fixture and the report hook import them when a test asks for a
cluster.  It provides:

* **Options**, in the ``raft-harness`` group of ``pytest --help`` (the old
  spellings in brackets still work, for one release):

  ``--raft-network {fifo,unreliable,all}`` (``--network``)
      the channel model: tests marked ``fifo``/``unreliable`` for the other one
      are deselected, and it is the ``cluster`` fixture's default network
      (``all`` runs both kinds of machines; the fixture then defaults to fifo).
  ``--raft-known-fixes`` (``--known-fixes``)
      tests under a ``properties/`` directory run on pysyncobj with the fixes
      for findings already made (:func:`harness.ledger.bugs.known_fixes`: every
      fix in the ledger for the installed release), their examples under their
      own key prefix of the database.
  ``--raft-storage`` (``--storage``), ``--raft-soak`` (``--runsoak``, or
  ``RAFT_HARNESS_SOAK=1``), ``--raft-slow`` (``--runslow``)
      run the tests marked ``storage``, ``soak``, ``slow`` (skipped otherwise).

* **Markers** ``fifo``, ``unreliable``, ``storage``, ``soak``, ``slow``.
* **Hypothesis profiles** ``raft-dev``, ``raft-ci``, ``raft-fuzz``,
  ``raft-bench``, ``raft-replay`` (:mod:`harness.fuzz.profiles`).  The plugin
  loads ``raft-dev`` (``raft-ci`` when ``CI`` is set) as the default as soon as
  it is registered, before any conftest.py is imported: a conftest's own
  ``settings.load_profile(...)`` and ``--hypothesis-profile=NAME`` both win.
* **Fixtures**: :func:`cluster`, a factory of simulated clusters that closes
  them after the test and, when the test fails, adds each one's node table, last
  messages and pysyncobj log to the failure report.

A state machine becomes sharded test cases with
:func:`harness.fuzz.shards.raft_machine_tests` (one line in the test module).
"""
from __future__ import annotations

import inspect
import sys
import os
import zlib
from importlib import metadata
from typing import TYPE_CHECKING, Any, Iterator, List, Optional

import pytest

from harness.environment import SOAK_ENV

if TYPE_CHECKING:
    from typing import Protocol

    from harness.sim.cluster import Cluster

    class ClusterFactory(Protocol):
        def __call__(self, nodes: int = 3, seed: Optional[int] = None, network: Optional[str] = None,
                     node_class: Optional[type] = None, **conf: Any) -> Cluster: ...

NETWORK_CHOICES = ("fifo", "unreliable", "all")

MARKERS = {
    "fifo": "a state machine or test on the fifo network (pysyncobj's TCP contract); deselected by "
            "--raft-network=unreliable",
    "unreliable": "a state machine or test on the unreliable network (the Raft paper's: loss, reordering, "
                  "duplication); deselected by the default --raft-network=fifo",
    "storage": "storage-fault state machines, expected to find pysyncobj failures: run with --raft-storage",
    "soak": "wall-clock soak runs over real sockets (harness.tcp.cluster.TcpCluster): run with --raft-soak",
    "slow": "long-running checks kept out of the default run: run with --raft-slow",
}

_CLUSTERS = pytest.StashKey[List[Any]]()


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raft-harness", "raft-harness (Raft clusters on pysyncobj)")
    group.addoption("--raft-network", "--network", dest="raft_network", choices=NETWORK_CHOICES, default="fifo",
                    help="channel model: run the fifo (default: pysyncobj's TCP contract) or unreliable state "
                         "machines, or all; also the cluster fixture's default network. --network: old "
                         "spelling, kept for one release")
    group.addoption("--raft-known-fixes", "--known-fixes", dest="raft_known_fixes", action="store_true",
                    default=False,
                    help="run the tests under properties/ on pysyncobj with the fixes for findings already made "
                         "(every fix in the ledger for the installed release, harness.ledger.bugs.known_fixes): "
                         "hunt for new bugs instead of rediscovering those. --known-fixes: old spelling, kept "
                         "for one release")
    group.addoption("--raft-storage", "--storage", dest="raft_storage", action="store_true", default=False,
                    help="also run the tests marked storage (storage-fault machines; they break pysyncobj by "
                         "design). --storage: old spelling, kept for one release")
    group.addoption("--raft-soak", "--runsoak", dest="raft_soak", action="store_true", default=False,
                    help=f"also run the tests marked soak (real sockets, wall-clock time; or set {SOAK_ENV}=1). "
                         f"--runsoak: old spelling, kept for one release")
    group.addoption("--raft-slow", "--runslow", dest="raft_slow", action="store_true", default=False,
                    help="also run the tests marked slow. --runslow: old spelling, kept for one release")
    group.addoption("--raft-strict-known", "--strict-known", dest="raft_strict_known", action="store_true",
                    default=False,
                    help="a state-machine failure that a ledger fix removes (a known pysyncobj bug) fails the "
                         "run like a new one, instead of being reported as an expected failure")
    group.addoption("--raft-triage-seconds", dest="raft_triage_seconds", type=_seconds, default=60.0, metavar="S",
                    help="per failing state-machine test: replay the counterexample with each fix in the ledger "
                         "for at most S wall seconds to name the bug (default 60; 0: no triage)")
    group.addoption("--raft-minimize-seconds", dest="raft_minimize_seconds", type=_seconds, default=30.0,
                    metavar="S", help="then remove steps while the same violation and label remain, for at most "
                                      "S wall seconds (default 30; 0: keep Hypothesis' shrink)")
    # Profiles are registered here, when the plugin is, so that --hypothesis-profile=raft-ci resolves
    # in Hypothesis' own pytest_configure; the default is loaded before any conftest.py can load its own.
    from hypothesis import settings

    from harness.fuzz import profiles

    profiles.register()
    settings.load_profile(profiles.default_profile())


@pytest.hookimpl(trylast=True)  # after Hypothesis' plugin has loaded --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.getoption("raft_known_fixes"):
        # Patched runs keep their examples apart: see harness.fuzz.database.
        from hypothesis import settings

        current = settings()
        if current.database is not None:
            from harness.fuzz.database import KeyPrefixedDatabase

            settings.register_profile("raft-known-fixes", parent=current,
                                      database=KeyPrefixedDatabase(current.database, b"known-fixes:"))
            settings.load_profile("raft-known-fixes")


def pytest_report_header(config: pytest.Config) -> str:
    try:
        versions = f"raft-harness {metadata.version('raft-harness')}, pysyncobj {metadata.version('pysyncobj')}"
    except metadata.PackageNotFoundError:
        versions = "raft-harness (not installed)"
    fixes = ", known fixes" if config.getoption("raft_known_fixes") else ""
    return f"{versions}: --raft-network={config.getoption('raft_network')}{fixes}"


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    network = config.getoption("raft_network")
    opt_in = {"slow": config.getoption("raft_slow"),
              "soak": config.getoption("raft_soak") or bool(os.environ.get(SOAK_ENV)),
              "storage": config.getoption("raft_storage")}
    option = {"slow": "--raft-slow", "soak": "--raft-soak", "storage": "--raft-storage"}
    # Machines of the other channel model are deselected, not skipped: a skipped item still takes
    # a pytest-xdist slot, which can put two shards of one machine on the same worker.
    keep, drop = [], []
    for item in items:
        if ("unreliable" in item.keywords and network == "fifo") or ("fifo" in item.keywords and network == "unreliable"):
            drop.append(item)
        else:
            keep.append(item)
        for marker, wanted in opt_in.items():
            if marker in item.keywords and not wanted:
                item.add_marker(pytest.mark.skip(reason=f"{marker}: run with {option[marker]}"))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _raft_known_fixes(request: pytest.FixtureRequest) -> Iterator[None]:
    """With --raft-known-fixes, every test under a properties/ directory runs on patched pysyncobj
    (never the harness' own tests: its finding tests must keep failing on the unmodified releases)."""
    if request.config.getoption("raft_known_fixes"):
        from harness.adapter.patching import inject
        from harness.fuzz.selection import known_fixes_apply_to
        from harness.ledger.bugs import known_fixes

        if known_fixes_apply_to(request.node.path, request.config.rootpath):
            with inject(*known_fixes()):
                yield
            return
    yield


def default_seed(nodeid: str, n: int = 0) -> int:
    """The seed of the ``n``-th cluster (from 0) a test makes without one: CRC-32 of the test's node id
    plus ``n``, the same in every run, process and Python version."""
    return zlib.crc32(nodeid.encode()) + n


def _default_network(item: pytest.Item) -> str:
    marked = [m for m in ("fifo", "unreliable") if item.get_closest_marker(m) is not None]
    if len(marked) == 1:
        return marked[0]
    chosen = item.config.getoption("raft_network")
    return "fifo" if chosen == "all" else chosen


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator["ClusterFactory"]:
    """Factory of simulated pysyncobj clusters: ``cluster(nodes=3, seed=None, network=None, node_class=None,
    **conf)`` returns an open :class:`harness.Cluster` (``conf``: any other Cluster keyword or SyncObjConf
    setting).

    * ``seed`` defaults to the CRC-32 of the test's node id (plus n for the n-th cluster of the test, from
      0): a test runs the same every time; the failure report names the seed.
    * ``network`` defaults to the test's ``fifo``/``unreliable`` marker, else ``--raft-network``
      (``fifo`` when that is ``all``).
    * ``node_class`` defaults to ``harness.KVStore``; it must be a ``pysyncobj.SyncObj`` subclass.  A bad
      argument fails the test with one line naming it.

    The fixture lives for the whole test: inside a Hypothesis ``@given`` test or state machine, open one
    ``harness.Cluster`` per example instead (``with Cluster(...) as c:``), as RaftMachine does.

    Every cluster made is closed after the test, pass or fail, and its node directories deleted.  When the
    test fails, the report gets one ``raft-harness cluster N`` section per cluster: seed, network, virtual
    time, the node table, exceptions inside nodes, the last messages delivered and what pysyncobj logged.
    """
    from harness.kv import KVStore
    from harness.sim.cluster import Cluster

    made: List[Cluster] = []
    request.node.stash[_CLUSTERS] = made
    own_keywords = {name for name, p in inspect.signature(Cluster).parameters.items()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def make(nodes: int = 3, seed: Optional[int] = None, network: Optional[str] = None,
             node_class: Optional[type] = None, **conf: Any) -> Cluster:
        seed = default_seed(request.node.nodeid, len(made)) if seed is None else seed
        network = _default_network(request.node) if network is None else network
        node_class = KVStore if node_class is None else node_class
        try:
            Cluster.check_arguments(nodes, seed, network, node_class,
                                    {k: v for k, v in conf.items() if k not in own_keywords})
            bad = None
        except ValueError as e:
            bad = str(e)
        if bad is not None:  # outside the except block: no "during handling of the above exception"
            pytest.fail(f"cluster(): {bad}", pytrace=False)
        made.append(Cluster(nodes, seed, network, node_class=node_class, **conf))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.close()


def _cluster_section(c: "Cluster") -> str:
    from harness.report import text

    if c.closed:
        head = (f"seed={c.seed}, network={c.network_model}, t={c.now:.4f}: closed by the test before it "
                f"failed (node states are gone)\nlast messages delivered:\n{text.recent_messages(c)}")
        logged = text.pysyncobj_log(c, limit=50)
        body = head + (f"\n{logged}" if logged else "")
    else:
        body = text.describe(c)
    if c.node_errors:
        body += "\nexceptions inside nodes:\n" + "\n".join(str(e) for e in c.node_errors)
    return body


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and item.config.getoption("raft_triage_seconds") > 0:
        _name_the_bug(item, report)
    clusters = item.stash.get(_CLUSTERS, None)
    if not clusters or not report.failed or report.when == "teardown":
        return
    for n, c in enumerate(clusters, 1):
        try:
            section = _cluster_section(c)
        except Exception as e:  # the report must not hide the test's own failure
            section = f"(could not describe this cluster: {type(e).__name__}: {e})"
        report.sections.append((f"raft-harness cluster {n}", section))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Forget the last test's machine failure: only this test's own is triaged if it fails."""
    machine = sys.modules.get("harness.fuzz.machine")
    if machine is not None:
        machine.last_failure = None


def _name_the_bug(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failing RaftMachine test: triage and minimise its counterexample; XFAIL if a fix removes it."""
    from harness.fuzz import machine

    if machine.last_failure is None:
        return
    from harness.fuzz.outcomes import judge

    config = item.config
    try:
        judge(report, strict=config.getoption("raft_strict_known"),
              triage_seconds=config.getoption("raft_triage_seconds"),
              minimize_seconds=config.getoption("raft_minimize_seconds"))
    except Exception as e:  # naming the bug must never hide the failure itself
        report.sections.append(("raft-harness: which bug", f"triage failed: {type(e).__name__}: {e}"))

