"""Bad input fails fast with a ValueError that names the argument and what is allowed."""
from __future__ import annotations

import itertools

import pytest

from harness import Cluster
from harness.wire.filters import (ConditionalFilter, CountFilter, DelayFilter, DropPacketFilter, DuplicateFilter,
                             HoldFilter, MessageTypeFilter, PartitionFilterFactory, PredicateFilter,
                             ReorderFilter)
from harness.util import eventually, retry


@pytest.fixture
def cluster():
    with Cluster(nodes=3, seed=1) as c:
        c.wait_leader()
        yield c


# --- Cluster construction ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(nodes=0), r"nodes must be an int in \[1, 9\], got 0"),
    (dict(nodes=10), r"nodes must be an int in \[1, 9\], got 10"),
    (dict(nodes=-1), r"nodes must be an int in \[1, 9\]"),
    (dict(nodes="3"), r"nodes must be an int in \[1, 9\], got '3'"),
    (dict(nodes=3.0), r"nodes must be an int"),
    (dict(nodes=True), r"nodes must be an int"),
    (dict(network="tcp"), r"network must be one of \['fifo', 'unreliable'\], got 'tcp'"),
    (dict(seed="x"), r"seed must be an int, got 'x'"),
    (dict(seed=1.5), r"seed must be an int"),
    (dict(node_class=dict), r"node_class must be a pysyncobj.SyncObj subclass \(e.g. harness.KVStore\), got "
                            r"<class 'dict'>"),
    (dict(node_class="KVStore"), r"node_class must be a pysyncobj.SyncObj subclass"),
    (dict(autoTick=True), r"autoTick cannot be set"),
    (dict(autoTick=False), r"autoTick cannot be set"),
    (dict(useFork=True), r"useFork cannot be set"),
    (dict(journalFile="/tmp/j"), r"journalFile cannot be set"),
    (dict(fullDumpFile="/tmp/d"), r"fullDumpFile cannot be set"),
    (dict(latency=(-0.1, 0.1)), r"latency must be \(min, max\) with 0 <= min <= max"),
    (dict(latency=(0.5, 0.1)), r"latency must be \(min, max\) with 0 <= min <= max"),
    (dict(reconnect_delay=-1), r"reconnect_delay must be >= 0"),
    (dict(read_step=-1e-6), r"read_step must be >= 0"),
], ids=lambda v: repr(v) if isinstance(v, dict) else "")
def test_cluster_constructor_rejects(kwargs, match):
    """Each invalid constructor argument raises ValueError naming it (and its allowed values)."""
    with pytest.raises(ValueError, match=match):
        Cluster(**kwargs)


# --- running ----------------------------------------------------------------------------------

def test_negative_durations_rejected(cluster):
    """run_for, run_until and wait_leader refuse negative virtual durations, naming the argument."""
    before = cluster.now
    with pytest.raises(ValueError, match=r"seconds must be >= 0 virtual seconds, got -1"):
        cluster.run_for(-1)
    with pytest.raises(ValueError, match=r"seconds must be >= 0"):
        cluster.run_for("1")
    with pytest.raises(ValueError, match=r"timeout must be >= 0 virtual seconds, got -0.5"):
        cluster.run_until(lambda: True, timeout=-0.5)
    with pytest.raises(ValueError, match=r"timeout must be >= 0"):
        cluster.wait_leader(timeout=-1)
    assert cluster.now == before  # nothing ran


# --- unknown node ids -------------------------------------------------------------------------

_CALLS = {
    "crash": lambda c: c.crash("n9"),
    "restart": lambda c: c.restart("n9"),
    "isolate_node": lambda c: c.isolate_node("n9"),
    "state": lambda c: c.state("n9"),
    "node": lambda c: c.node("n9"),
    "is_up": lambda c: c.is_up("n9"),
    "incarnation": lambda c: c.incarnation("n9"),
    "force_snapshot": lambda c: c.force_snapshot("n9"),
    "clear_filters": lambda c: c.clear_filters("n9"),
    "remove_node": lambda c: c.remove_node("n9"),
    "add_send_filter": lambda c: c.add_send_filter("n9", DelayFilter(0.1)),
    "add_recv_filter": lambda c: c.add_recv_filter("n9", DelayFilter(0.1)),
}


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_unknown_node_id_rejected(cluster, name):
    """Every call taking a node id names the argument and lists the valid ids."""
    with pytest.raises(ValueError, match=r"node_id must be one of \['n1', 'n2', 'n3'\], got 'n9'"):
        _CALLS[name](cluster)


def test_unknown_ids_in_partition_name_the_group(cluster):
    """partition() says which group holds the unknown id, and installs nothing."""
    with pytest.raises(ValueError, match=r"group_a must be one of \['n1', 'n2', 'n3'\], got 'x'"):
        cluster.partition(["x"], ["n1"])
    with pytest.raises(ValueError, match=r"group_b must be one of .*got 'x'"):
        cluster.partition(["n1"], ["n2", "x"])
    assert all(cluster._net.filters(n) == ([], []) for n in cluster.node_ids)


def test_overlapping_or_empty_partition_rejected(cluster):
    """partition() groups must be disjoint and non-empty."""
    with pytest.raises(ValueError, match=r"group_a and group_b must be disjoint, both contain \['n1'\]"):
        cluster.partition(["n1", "n2"], ["n1", "n3"])
    with pytest.raises(ValueError, match=r"group_a and group_b must both be non-empty"):
        cluster.partition([], ["n1"])


def test_unknown_via_rejected(cluster):
    """put/get through an unknown node name the ``via`` argument and record no operation."""
    with pytest.raises(ValueError, match=r"via must be one of \['n1', 'n2', 'n3'\], got 'n9'"):
        cluster.put("k", 1, via="n9")
    with pytest.raises(ValueError, match=r"via must be one of .*got 'n9'"):
        cluster.get("k", via="n9")
    assert len(cluster.history) == 0


def test_non_filter_rejected(cluster):
    """add_send_filter only takes harness Filters."""
    with pytest.raises(ValueError, match=r"filter must be a harness Filter"):
        cluster.add_send_filter("n1", lambda e: True)


# --- lifecycle misuse -------------------------------------------------------------------------

def test_crash_twice_and_restart_up_node_rejected(cluster):
    """Crashing a crashed node or restarting a live one is a ValueError naming the node; the first
    crash still counts once and the node's incarnation does not change."""
    with pytest.raises(ValueError, match=r"node_id 'n1' is up; crash it first"):
        cluster.restart("n1")
    cluster.crash("n1")
    with pytest.raises(ValueError, match=r"node_id 'n1' is already crashed"):
        cluster.crash("n1")
    with pytest.raises(ValueError, match=r"node_id 'n1' is crashed"):
        cluster.force_snapshot("n1")
    assert cluster.stats["crashes"] == 1 and cluster.incarnation("n1") == 1
    cluster.restart("n1")
    assert cluster.incarnation("n1") == 2


def test_remove_readonly_node_rejected(cluster):
    """remove_node is for voters; a read-only node id is refused by name."""
    ro = cluster.add_readonly_node()
    with pytest.raises(ValueError, match=rf"node_id '{ro}' is read-only"):
        cluster.remove_node(ro)


# --- filters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: DropPacketFilter(rate=1.5), r"rate must be a number in \[0, 1\], got 1.5"),
    (lambda: DropPacketFilter(rate=-0.1), r"rate must be a number in \[0, 1\], got -0.1"),
    (lambda: DropPacketFilter(rate="0.5"), r"rate must be a number in \[0, 1\]"),
    (lambda: DropPacketFilter(rate=float("nan")), r"rate must be a number in \[0, 1\]"),
    (lambda: DuplicateFilter(rate=2), r"rate must be a number in \[0, 1\]"),
    (lambda: DelayFilter(-1), r"seconds must be >= 0 virtual seconds, got -1"),
    (lambda: ReorderFilter(-1), r"max_delay must be >= 0 virtual seconds, got -1"),
    (lambda: MessageTypeFilter(["nope"]), r"types must be a non-empty subset of \['append_entries'.*got \['nope'\]"),
    (lambda: MessageTypeFilter("nope"), r"types must be a non-empty subset"),
    (lambda: MessageTypeFilter([]), r"types must be a non-empty subset"),
    (lambda: HoldFilter(types=["nope"]), r"types must be a non-empty subset"),
    (lambda: CountFilter(-1), r"n must be an int >= 0, got -1"),
    (lambda: CountFilter(1.5), r"n must be an int >= 0"),
    (lambda: PredicateFilter(3), r"keep must be callable"),
    (lambda: ConditionalFilter("x"), r"inner must be a Filter"),
    (lambda: PartitionFilterFactory(["n1", "n2"], ["n2"]), r"group_a and group_b must be disjoint, both contain \['n2'\]"),
    (lambda: PartitionFilterFactory([], ["n1"]), r"group_a and group_b must both be non-empty"),
    (lambda: PartitionFilterFactory(["n1"], []), r"group_a and group_b must both be non-empty"),
], ids=["drop>1", "drop<0", "drop-str", "drop-nan", "dup>1", "delay<0", "reorder<0", "type-unknown",
        "type-str-unknown", "type-empty", "hold-type", "count<0", "count-float", "predicate", "conditional",
        "factory-overlap", "factory-empty-a", "factory-empty-b"])
def test_filter_constructors_reject(make, match):
    """Each filter checks its arguments when built and names the offending one."""
    with pytest.raises(ValueError, match=match):
        make()


# --- util -------------------------------------------------------------------------------------

def test_util_bad_arguments():
    """retry and eventually name their bad arguments."""
    with pytest.raises(ValueError, match=r"attempts must be an int >= 1, got 0"):
        retry(lambda: 1, attempts=0)
    with pytest.raises(ValueError, match=r"backoff must be >= 0 and factor >= 1"):
        retry(lambda: 1, backoff=-1)
    with pytest.raises(ValueError, match=r"factor"):
        retry(lambda: 1, factor=0.5)
    with pytest.raises(ValueError, match=r"timeout must be >= 0"):
        eventually(lambda: True, -1)


# --- input that once slipped through or failed with the wrong error (regressions) ---------------

@pytest.mark.parametrize("latency", [0.01, (0.01,), ("a", "b")], ids=["scalar", "1-tuple", "strings"])
def test_malformed_latency_names_the_argument(latency):
    """latency=0.01, (0.01,) or ('a', 'b') should be a ValueError mentioning 'latency'."""
    try:
        Cluster(nodes=1, latency=latency).close()
    except ValueError as e:
        assert "latency" in str(e), f"ValueError does not name the argument: {e}"
        return
    raise AssertionError("accepted")


@pytest.mark.parametrize("call", [lambda c: c.run_for(float("nan")),
                                  lambda c: c.run_until(lambda: False, float("nan")),
                                  lambda c: eventually(lambda: False, float("nan"), cluster=c)],
                         ids=["run_for", "run_until", "eventually"])
def test_nan_duration_rejected(call):
    """A NaN duration must be a ValueError.  A guard turns today's endless loop into RuntimeError."""
    with Cluster(nodes=1, seed=0) as c:
        pop, count = c._events.pop, itertools.count()

        def guarded():
            if next(count) > 20_000:
                raise RuntimeError("guard: event loop did not stop")
            return pop()
        c._events.pop = guarded
        with pytest.raises(ValueError, match=r"(seconds|timeout) must be"):
            call(c)


@pytest.mark.parametrize("make", [lambda: DelayFilter(float("nan")), lambda: ReorderFilter(float("nan")),
                                  lambda: Cluster(nodes=1, read_step=float("nan")).close()],
                         ids=["DelayFilter", "ReorderFilter", "read_step"])
def test_nan_seconds_rejected(make):
    """NaN is not a number of seconds >= 0 and should be refused like a negative one."""
    with pytest.raises(ValueError):
        make()


def test_invalid_pysyncobj_setting_is_value_error():
    """raftMinTimeout > raftMaxTimeout should be a ValueError naming the settings."""
    with pytest.raises(ValueError, match="raftMinTimeout|raftMaxTimeout"):
        Cluster(nodes=1, raftMinTimeout=5.0, raftMaxTimeout=1.0)


def test_misspelt_pysyncobj_setting_rejected():
    """Cluster(appendEntriesPeriode=...) (typo) should be refused rather than silently ignored."""
    with pytest.raises(ValueError, match="appendEntriesPeriode"):
        Cluster(nodes=1, appendEntriesPeriode=0.01).close()
