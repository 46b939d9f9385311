"""Core benchmark: harness overhead and simulation speed, measured side by side in one run.

1. The same workload — 3 nodes elect a leader, then 2,000 writes are proposed
   through it and all committed — on ``harness.Cluster`` and on a bare loop
   that ticks plain pysyncobj nodes over a plain in-memory queue with a
   counter clock.  Target: harness wall / bare wall <= 1.5.
2. Simulated seconds per wall second on an idle-heavy run (3 nodes, 10
   virtual minutes of heartbeats after the election).  Target: >= 500.

Run: python bench/bench_core.py [--writes N] [--repeat R]
"""
from __future__ import annotations

import argparse
import collections
import os
import pickle
import shutil
import statistics
import tempfile
import time

import pysyncobj.syncobj as syncobj_module
from pysyncobj import SyncObjConf
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


def bare_workload(writes: int) -> float:
    """Plain pysyncobj nodes, a counter clock, one round = deliver everything, tick everyone."""
    now = [0.0]

    def clock():
        now[0] += 1e-6
        return now[0]

    saved = syncobj_module.monotonicTime
    syncobj_module.monotonicTime = clock
    start = time.perf_counter()
    tmp = tempfile.mkdtemp(dir=node_dir_base())  # where the harness keeps its nodes' files too
    try:
        ids = ["a", "b", "c"]
        queues = {i: collections.deque() for i in ids}
        nodes = {}
        for i in ids:
            # The same pysyncobj configuration as the harness' nodes: durable journal and dump.
            conf = SyncObjConf(autoTick=False, useFork=False, dynamicMembershipChange=True,
                               journalFile=os.path.join(tmp, f"{i}.journal"),
                               fullDumpFile=os.path.join(tmp, f"{i}.dump"))
            nodes[i] = KVStore(Node(i), [Node(p) for p in ids if p != i], conf,
                               transportClass=lambda so, s, o, i=i: _QueueTransport(queues, i, so, s, o))
        for i in ids:
            for p in ids:
                if p != i:
                    nodes[i]._SyncObj__transport._onNodeConnected(Node(p))

        def round_():
            for i in ids:
                q = queues[i]
                while q:
                    src, payload = q.popleft()
                    nodes[i]._SyncObj__transport._onMessageReceived(Node(src), pickle.loads(payload))
                nodes[i].doTick(0.0)
            now[0] += 0.05

        while not any(n._isLeader() for n in nodes.values()):
            round_()
        leader = next(n for n in nodes.values() if n._isLeader())
        done = []
        for i in range(writes):
            leader.set(f"k{i % 16}", i, callback=lambda res, err: done.append(err))
        while len(done) < writes:
            round_()
        assert all(err == 0 for err in done), "bare workload lost writes"
        for n in nodes.values():
            n._SyncObj__raftLog._destroy()
    finally:
        syncobj_module.monotonicTime = saved
        shutil.rmtree(tmp)
    return time.perf_counter() - start


def idle_run(virtual_seconds: float) -> float:
    with Cluster(3, seed=2) as c:
        c.wait_leader()
        start = time.perf_counter()
        c.run_for(virtual_seconds)
        return virtual_seconds / (time.perf_counter() - start)


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
    speed = statistics.median(idle_run(args.idle_seconds) for _ in range(args.repeat))
    print(f"writes={args.writes} repeat={args.repeat} (medians)")
    print(f"harness wall {h:.3f}s  bare wall {b:.3f}s  ratio {h / b:.2f}  (target <= 1.5)")
    print(f"idle run: {speed:.0f} simulated seconds per wall second  (target >= 500)")


if __name__ == "__main__":
    main()
