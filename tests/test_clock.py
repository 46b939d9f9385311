"""Virtual time: pysyncobj's clock and random are patched exactly while clusters live."""
from __future__ import annotations

import gzip
import random

import pysyncobj.monotonic
import pysyncobj.serializer as serializer
import pysyncobj.syncobj as so
import pytest

from harness import Cluster, KVStore

from harness.sim import clock
from harness.sim.clock import VirtualClock
from helpers import Recorder

ORIGINAL_TIME = pysyncobj.monotonic.monotonic
ORIGINAL_RANDOM = random


def _restored() -> bool:
    return (so.monotonicTime is ORIGINAL_TIME and so.random is ORIGINAL_RANDOM
            and serializer.gzip is gzip and not clock.patched())


@pytest.fixture(autouse=True)
def _starts_unpatched():
    assert _restored(), "a previous test left pysyncobj patched"
    yield


# --- patching and restoring -------------------------------------------------------------------

def test_patched_while_alive_restored_on_close():
    """A live cluster replaces pysyncobj.syncobj.monotonicTime and .random; close() puts them back."""
    c = Cluster(nodes=3, seed=1)
    try:
        assert clock.patched()
        assert so.monotonicTime is not ORIGINAL_TIME
        assert so.random is not ORIGINAL_RANDOM
        assert serializer.gzip is not gzip  # dump headers get no wall-clock timestamp
        c.wait_leader()
    finally:
        c.close()
    assert _restored()
    c.close()  # a second close does not release someone else's patch
    assert _restored()


def test_outside_a_step_pysyncobj_cannot_read_time_or_random():
    """While patched, a clock/random read outside any cluster step is an error, not wall time."""
    with Cluster(nodes=1) as c:
        with pytest.raises(RuntimeError, match="outside a simulated cluster step"):
            so.monotonicTime()
        with pytest.raises(RuntimeError, match="outside a simulated cluster step"):
            so.random.random()
        with pytest.raises(AttributeError, match="randint"):
            so.random.randint(1, 2)
        c.run_for(0.1)
    assert _restored()


def test_inside_a_step_pysyncobj_sees_virtual_time():
    """During a step (here: inside a filter) pysyncobj's clock reads the cluster's virtual time."""
    readings = []

    class Probe(Recorder):
        def filter(self, batch, ctx):
            readings.append((ctx.now, so.monotonicTime()))
            return batch

    with Cluster(nodes=3, seed=2) as c:
        c.add_recv_filter("n1", Probe())
        c.run_for(3)
        assert readings
        assert all(abs(virtual - seen) < 1e-3 for virtual, seen in readings)
        assert readings[-1][1] > 1.0  # virtual seconds since the cluster started, not host uptime


def test_restored_when_init_fails_in_node_class():
    """A node class whose __init__ raises (after SyncObj.__init__) makes Cluster() fail and unpatch."""
    class Exploding(KVStore):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            raise RuntimeError("exploding node")

    with pytest.raises(RuntimeError, match="exploding node"):
        Cluster(nodes=3, node_class=Exploding)
    assert _restored()


def test_restored_when_validation_fails():
    """Argument errors (before or after patching) never leave pysyncobj patched."""
    with pytest.raises(ValueError):
        Cluster(nodes=0)
    assert _restored()
    with pytest.raises(ValueError):
        Cluster(latency=(1, 0))  # raised after the patch was installed
    assert _restored()


def test_restored_when_failing_alongside_a_live_cluster():
    """A failed construction while another cluster lives releases only its own claim."""
    with Cluster(nodes=1, seed=1) as alive:
        with pytest.raises(ValueError):
            Cluster(latency=(1, 0))
        assert clock.patched()
        alive.run_for(1)  # still works
        assert alive.leader() == "n1"
    assert _restored()


def test_two_clusters_one_after_another():
    """Sequential clusters each patch and unpatch; the second behaves exactly like the first."""
    digests = []
    for _ in range(2):
        with Cluster(nodes=3, seed=9) as c:
            assert clock.patched()
            c.wait_leader()
            c.must_put("a", 1)
            digests.append(c.trace_digest())
        assert _restored()
    assert digests[0] == digests[1]


@pytest.mark.parametrize("first", ["a", "b"])
def test_two_alive_at_once_closed_in_either_order(first):
    """Two live clusters: closing one keeps the patch for the other (which keeps working), closing
    the second restores pysyncobj."""
    a = Cluster(nodes=3, seed=1)
    b = Cluster(nodes=3, seed=2)
    try:
        a.wait_leader()
        b.wait_leader()
        closing, staying = (a, b) if first == "a" else (b, a)
        closing.close()
        assert clock.patched() and so.monotonicTime is not ORIGINAL_TIME
        staying.must_put("k", 1)
        assert staying.must_get("k") == 1
        staying.close()
        assert _restored()
    finally:
        a.close()
        b.close()
    assert _restored()


def test_interleaved_clusters_keep_separate_time_and_randomness():
    """Running cluster B between A's steps neither moves A's clock nor changes A's run."""
    with Cluster(nodes=3, seed=4) as alone:
        alone.wait_leader()
        alone.must_put("k", 1)
        alone.run_for(1)
        expected = (alone.trace_digest(), alone.now)
    with Cluster(nodes=3, seed=4) as a, Cluster(nodes=3, seed=5) as b:
        a.wait_leader()
        b.run_for(7)
        a_now = a.now
        b.wait_leader()
        assert a.now == a_now
        a.must_put("k", 1)
        b.must_put("other", 2)
        a.run_for(1)
        assert (a.trace_digest(), a.now) == expected
        assert b.now >= 7


# --- VirtualClock -----------------------------------------------------------------------------

def test_virtual_clock_read_advances_by_read_step():
    """read() returns the current time and then moves on by exactly read_step; now() does not move."""
    vc = VirtualClock(start=10.0, read_step=0.5)
    assert vc.now() == 10.0 and vc.now() == 10.0
    assert [vc.read() for _ in range(3)] == [10.0, 10.5, 11.0]
    assert vc.now() == 11.5


def test_virtual_clock_never_goes_backwards():
    """advance_to a past time is ignored, advance moves forward, negative steps are refused."""
    vc = VirtualClock(read_step=1e-6)
    vc.advance_to(5.0)
    assert vc.now() == 5.0
    vc.advance_to(3.0)
    assert vc.now() == 5.0
    vc.advance(0.25)
    assert vc.now() == 5.25
    with pytest.raises(ValueError, match="dt must be >= 0"):
        vc.advance(-1)
    assert vc.now() == 5.25
    rng = random.Random(0)
    last = vc.now()
    for _ in range(1000):
        op = rng.randrange(3)
        if op == 0:
            vc.advance_to(rng.uniform(0, 20))
        elif op == 1:
            vc.read()
        else:
            vc.advance(rng.uniform(0, 0.1))
        assert vc.now() >= last
        last = vc.now()


def test_virtual_clock_zero_read_step_freezes_reads():
    """read_step=0 is allowed and reads are then stable; negative read_step is refused."""
    vc = VirtualClock(read_step=0)
    assert vc.read() == vc.read() == 0.0
    with pytest.raises(ValueError, match="read_step must be >= 0"):
        VirtualClock(read_step=-1)


def test_cluster_time_only_moves_when_run():
    """Cluster.now is virtual: it does not move between calls and advances exactly by run_for."""
    with Cluster(nodes=1) as c:
        t = c.now
        assert c.now == t
        c.run_for(2.5)
        assert t + 2.5 <= c.now < t + 2.5 + 1e-3  # plus at most a few read steps
        t2 = c.now
        c.tick()
        assert c.now >= t2 + c.tick_interval
