"""Both backends keep one contract: ``Cluster`` and ``TcpCluster`` satisfy ``ClusterLike`` and refuse bad
input with the same errors.

The bad-input expectations are the ones :mod:`test_bad_input` holds for the simulated cluster, run
against both backends.  Only one kind of cluster may be open per process, so every test here opens
one at a time.
"""
from __future__ import annotations

import inspect
from typing import Any, Set

import pytest

import test_bad_input as bad_input
from harness.contract import ClusterBase, ClusterLike, RecordingCluster
from harness.sim.cluster import Cluster
from harness.tcp import TcpCluster

pytestmark = pytest.mark.timeout(120)

BACKENDS = [Cluster, TcpCluster]
#: Constructor arguments both backends take (the others in test_bad_input are the simulation's own).
SHARED_ARGUMENTS = {"nodes", "seed", "network", "reconnect_delay", "autoTick", "useFork", "journalFile",
                    "fullDumpFile"}


def _members(protocol: type) -> Set[str]:
    """Every member a protocol declares, inherited ones included: annotated attributes and defined names."""
    names: Set[str] = set()
    for klass in protocol.__mro__:
        if klass.__module__ in ("typing", "builtins"):
            continue
        names |= set(vars(klass).get("__annotations__", {}))
        names |= {n for n in vars(klass) if not n.startswith("_") or n in ("__enter__", "__exit__")}
    return names


def _signature_mismatches(protocol: type, cls: type, name: str) -> list:
    """How ``cls.name`` fails to accept every call ``protocol.name`` allows (empty: it accepts them all)."""
    wanted = inspect.signature(getattr(protocol, name)).parameters
    have = inspect.signature(getattr(cls, name)).parameters
    problems = []
    for p in wanted.values():
        q = have.get(p.name)
        if q is None:
            problems.append(f"no parameter {p.name!r}")
        elif q.kind != p.kind:
            problems.append(f"{p.name!r} is {q.kind.description}, the protocol has {p.kind.description}")
        elif p.default is not p.empty and q.default != p.default:
            problems.append(f"{p.name!r} defaults to {q.default!r}, the protocol to {p.default!r}")
    for q in have.values():
        if q.name not in wanted and q.default is q.empty and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD):
            problems.append(f"extra required parameter {q.name!r}")
    return problems


@pytest.fixture(params=BACKENDS, ids=lambda cls: cls.__name__, scope="module")
def cluster(request):
    """A live 3-node cluster of each backend in turn (the module scope closes one before the next opens)."""
    with request.param(nodes=3, seed=1) as c:
        yield c


def test_members_are_the_library_api():
    """The protocol lists what the rest of the harness uses of a cluster."""
    assert {"node_ids", "voter_ids", "up_ids", "is_up", "incarnation", "node", "state", "observe", "leader",
            "wait_leader", "connected", "now", "run_for", "run_until", "tick", "put", "get", "must_put", "must_get", "crash",
            "restart", "force_snapshot", "partition", "isolate_node", "heal", "add_send_filter",
            "add_recv_filter", "add_send_filter_factory", "clear_filters", "clear_all_filters", "filters",
            "recent_messages", "messages_delivered", "stats", "history", "node_errors", "seed",
            "network_model", "pysyncobj_version", "close", "__enter__", "__exit__"} <= _members(ClusterLike)


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda cls: cls.__name__)
def test_both_classes_share_the_base_and_the_method_signatures(cls):
    """Every protocol method exists on both classes and takes every call the protocol allows."""
    assert issubclass(cls, ClusterBase)
    for name in sorted(_members(ClusterLike)):
        member = inspect.getattr_static(ClusterLike, name, None)
        if callable(member) and not isinstance(member, property):
            assert callable(getattr(cls, name, None)), f"{cls.__name__} has no method {name}"
            assert not _signature_mismatches(ClusterLike, cls, name), \
                (cls.__name__, name, _signature_mismatches(ClusterLike, cls, name))


def test_each_instance_has_every_member(cluster):
    """A live cluster of either backend is a ClusterLike: every member, attributes included, is there."""
    assert isinstance(cluster, ClusterLike)
    missing = sorted(n for n in _members(ClusterLike) if not hasattr(cluster, n))
    assert not missing, f"{type(cluster).__name__} lacks {missing}"
    # Logging and digesting every delivered message needs the simulation's total order.
    assert isinstance(cluster, RecordingCluster) == (type(cluster) is Cluster)


# --- the same bad input, the same error ---------------------------------------------------------

def _constructor_cases():
    """test_bad_input's constructor expectations for the arguments both backends take."""
    mark = next(m for m in bad_input.test_cluster_constructor_rejects.pytestmark if m.name == "parametrize")
    cases = [(kwargs, match) for kwargs, match in mark.args[1] if set(kwargs) <= SHARED_ARGUMENTS]
    assert len(cases) >= 10  # nodes, network, seed, the forbidden settings, reconnect_delay
    return cases


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("kwargs, match", _constructor_cases(), ids=lambda v: repr(v) if isinstance(v, dict) else "")
def test_constructor_rejects_like_test_bad_input(cls, kwargs, match):
    """Each backend refuses the bad constructor arguments test_bad_input refuses for the simulation."""
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def _error(cls: type, **kwargs: Any) -> str:
    with pytest.raises(ValueError) as e:
        cls(**kwargs)
    return str(e.value)


@pytest.mark.parametrize("kwargs", [dict(nodes=0), dict(nodes=10), dict(nodes="3"), dict(nodes=True),
                                    dict(seed="x"), dict(seed=1.5), dict(network="tcp"),
                                    dict(appendEntriesPeriode=0.01),
                                    dict(raftMinTimeout=5.0, raftMaxTimeout=1.0)],
                         ids=lambda v: repr(v))
def test_shared_checks_give_the_same_message(kwargs):
    """Where the check is shared, the message is the same word for word from both backends."""
    assert _error(Cluster, **kwargs) == _error(TcpCluster, **kwargs)


def test_unknown_node_ids_rejected(cluster):
    """test_bad_input's unknown-id calls that are part of the contract fail alike on both backends."""
    calls = {name: call for name, call in bad_input._CALLS.items() if name in _members(ClusterLike)}
    assert len(calls) >= 10
    for name, call in sorted(calls.items()):
        with pytest.raises(ValueError, match=r"node_id must be one of \['n1', 'n2', 'n3'\], got 'n9'"):
            call(cluster)
    with pytest.raises(ValueError, match=r"group_a must be one of \['n1', 'n2', 'n3'\], got 'x'"):
        cluster.partition(["x"], ["n1"])
    with pytest.raises(ValueError, match=r"via must be one of \['n1', 'n2', 'n3'\], got 'n9'"):
        cluster.put("k", 1, via="n9")
    assert all(cluster.filters(n) == ([], []) for n in cluster.node_ids)
    assert len(cluster.history) == 0


def test_negative_durations_rejected(cluster):
    """run_for, run_until and wait_leader name the bad duration on both backends (in their own seconds)."""
    for call in (lambda: cluster.run_for(-1), lambda: cluster.run_for("1"), lambda: cluster.run_for(float("nan"))):
        with pytest.raises(ValueError, match=r"seconds must be >= 0"):
            call()
    with pytest.raises(ValueError, match=r"timeout must be >= 0"):
        cluster.run_until(lambda: True, timeout=-0.5)
    with pytest.raises(ValueError, match=r"timeout must be >= 0"):
        cluster.wait_leader(timeout=-1)
