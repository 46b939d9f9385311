"""Core benchmark: harness overhead and simulation speed, measured side by side in one run.

1. The same workload — 3 nodes elect a leader, then 2,000 writes are proposed
   through it and all committed — on ``harness.Cluster`` and on a bare loop
   that ticks plain pysyncobj nodes over a plain in-memory queue with a
   counter clock.  Target: harness wall / bare wall <= 1.5.
2. Simulated seconds per wall second on an idle-heavy run (3 nodes, 10
   virtual minutes of heartbeats after the election).  Target: >= 500.  Side by side: the same
   run with ``skip_idle_ticks``, the bare loop idling (ticking every 0.05 s, as autoTick does),
   and the ceiling pysyncobj itself sets: the run's virtual time over the wall time spent inside
   pysyncobj's ticks and message handlers, as if the harness cost nothing.

Run: python bench/bench_core.py [--writes N] [--repeat R]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pickle
import shutil
import statistics
import tempfile
import time
from typing import Iterator, List

import pysyncobj.syncobj as syncobj_module
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from harness import Cluster, KVStore
from harness.util import node_dir_base


def harness_workload(writes: int) -> float:
    start = time.perf_counter()
    with Cluster(3, seed=1) as c:
        leader = c.wait_leader()
        ops = [c.put(f"k{i % 16}", i, via=leader) for i in range(writes)]
        assert c.run_until(lambda: all(op.done for op in ops), timeout=600)
        assert all(op.outcome == "ok" for op in ops), "harness workload lost writes"
    return time.perf_counter() - start


class _QueueTransport(Transport):
    """The simplest possible transport: append to a shared deque, always connected."""

    def __init__(self, queues, me, syncObj, selfNode, otherNodes):
        super().__init__(syncObj, selfNode, otherNodes)
        self._queues, self._me = queues, me

    @property
    def ready(self):
        return True

    def tryGetReady(self):
        pass

    def addNode(self, node):
        pass

    def dropNode(self, node):
        pass

    def send(self, node, message):
        self._queues[node.id].append((self._me, pickle.dumps(message)))
        return True

    def destroy(self):
        pass


class _BareCluster:
    """Three plain pysyncobj nodes, a counter clock, one round = deliver everything, tick everyone."""

    def __init__(self) -> None:
        self.now = 0.0
        self._saved = syncobj_module.monotonicTime
        syncobj_module.monotonicTime = self._clock
        self._tmp = tempfile.mkdtemp(dir=node_dir_base())  # where the harness keeps its nodes' files too
        self.ids = ["a", "b", "c"]
        self.queues = {i: collections.deque() for i in self.ids}
        self.nodes = {}
        for i in self.ids:
            # The same pysyncobj configuration as the harness' nodes: durable journal and dump.
            conf = SyncObjConf(autoTick=False, useFork=False, dynamicMembershipChange=True,
                               journalFile=os.path.join(self._tmp, f"{i}.journal"),
                               fullDumpFile=os.path.join(self._tmp, f"{i}.dump"))
            self.nodes[i] = KVStore(Node(i), [Node(p) for p in self.ids if p != i], conf,
                                    transportClass=lambda so, s, o, i=i: _QueueTransport(self.queues, i, so, s, o))
        for i in self.ids:
            for p in self.ids:
                if p != i:
                    self.nodes[i]._SyncObj__transport._onNodeConnected(Node(p))

    def _clock(self) -> float:
        self.now += 1e-6
        return self.now

    def round(self) -> None:
        for i in self.ids:
            q = self.queues[i]
            while q:
                src, payload = q.popleft()
                self.nodes[i]._SyncObj__transport._onMessageReceived(Node(src), pickle.loads(payload))
            self.nodes[i].doTick(0.0)
        self.now += 0.05

    def leader(self):
        while not any(n._isLeader() for n in self.nodes.values()):
            self.round()
        return next(n for n in self.nodes.values() if n._isLeader())

    def close(self) -> None:
        for n in self.nodes.values():
            n._SyncObj__raftLog._destroy()
        syncobj_module.monotonicTime = self._saved
        shutil.rmtree(self._tmp)


def bare_workload(writes: int) -> float:
    start = time.perf_counter()
    bare = _BareCluster()
    try:
        leader = bare.leader()
        done = []
        for i in range(writes):
            leader.set(f"k{i % 16}", i, callback=lambda res, err: done.append(err))
        while len(done) < writes:
            bare.round()
        assert all(err == 0 for err in done), "bare workload lost writes"
    finally:
        bare.close()
    return time.perf_counter() - start


def idle_run(virtual_seconds: float, skip_idle_ticks: bool = False) -> float:
    with Cluster(3, seed=2, skip_idle_ticks=skip_idle_ticks) as c:
        c.wait_leader()
        start = time.perf_counter()
        c.run_for(virtual_seconds)
        return virtual_seconds / (time.perf_counter() - start)


def bare_idle_run(virtual_seconds: float) -> float:
    """The idle run on the bare loop: every node ticks every 0.05 s, as pysyncobj's autoTick would."""
    bare = _BareCluster()
    try:
        bare.leader()
        start, begin = time.perf_counter(), bare.now
        while bare.now - begin < virtual_seconds:
            bare.round()
        return virtual_seconds / (time.perf_counter() - start)
    finally:
        bare.close()


@contextlib.contextmanager
def pysyncobj_time() -> Iterator[List[float]]:
    """Accumulate, in the yielded one-item list, the wall seconds spent inside pysyncobj's own code:
    ticks, message handlers and node construction, timed around each call (the sends they make
    included).  Nodes bind their message handler when built: build them inside the block."""
    inside = [0.0]

    def timed(method):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                inside[0] += time.perf_counter() - t
        return run

    names = ("doTick", "_SyncObj__onMessageReceived", "__init__")
    saved = {name: vars(SyncObj)[name] for name in names}
    for name, method in saved.items():
        setattr(SyncObj, name, timed(method))
    try:
        yield inside
    finally:
        for name, method in saved.items():
            setattr(SyncObj, name, method)


def pysyncobj_ceiling(virtual_seconds: float, skip_idle_ticks: bool) -> float:
    """Simulated seconds per wall second of the harness' idle run if the harness itself cost nothing: the
    run's virtual seconds over the wall time spent inside pysyncobj's own code."""
    with pysyncobj_time() as inside:
        with Cluster(3, seed=2, skip_idle_ticks=skip_idle_ticks) as c:
            c.wait_leader()
            inside[0] = 0.0
            c.run_for(virtual_seconds)
            return virtual_seconds / inside[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=600.0)
    args = parser.parse_args()
    pairs = []
    for _ in range(args.repeat):  # interleaved so both sides see the same machine load
        pairs.append((harness_workload(args.writes), bare_workload(args.writes)))
    h = statistics.median(p[0] for p in pairs)
    b = statistics.median(p[1] for p in pairs)
    idle = [(idle_run(args.idle_seconds), idle_run(args.idle_seconds, skip_idle_ticks=True),
             bare_idle_run(args.idle_seconds), pysyncobj_ceiling(args.idle_seconds, skip_idle_ticks=True))
            for _ in range(args.repeat)]
    plain, skipping, bare, ceiling = (statistics.median(r[i] for r in idle) for i in range(4))
    print(f"writes={args.writes} repeat={args.repeat} (medians)")
    print(f"harness wall {h:.3f}s  bare wall {b:.3f}s  ratio {h / b:.2f}  (target <= 1.5)")
    print(f"idle run, simulated seconds per wall second (target >= 500): harness {plain:.0f}, "
          f"harness with skip_idle_ticks {skipping:.0f}, bare loop ticking every 0.05 s {bare:.0f}; "
          f"pysyncobj's own code alone in the skipping run {ceiling:.0f}")


if __name__ == "__main__":
    main()
