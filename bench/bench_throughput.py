"""Throughput: of skip_idle_ticks, and of this checkout against an older one, side by side in one run.

Skipping is opt-in (``Cluster(skip_idle_ticks=True)``, or ``cluster_options`` on a machine): it
changes how often the clock is read, so a run's times and trace digest are not those of plain
ticking.  This measures what it buys, interleaving both sides so they see the same machine load:

1. the idle run of bench_core part 2 (3 nodes, heartbeats only): simulated seconds per wall second;
2. the FifoRaft state machine, derandomized, the same examples with and without skipping:
   Hypothesis examples per wall second.

With ``--baseline DIR`` (a checkout of the harness, e.g. ``git worktree add DIR <commit>``) it
also runs the same derandomized FifoRaft examples with that checkout's harness, in a child
process each, alternating with this one: steps per wall second on both sides, and the digest of
every cluster's message trace, which must be equal (the same work, done faster or slower).

Run: python bench/bench_throughput.py [--repeat R] [--examples N] [--baseline DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Tuple

from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from harness import Cluster
from harness.fuzz.machine import RaftMachine


class _Plain(RaftMachine):
    network = "fifo"


class _Skipping(RaftMachine):
    network = "fifo"
    cluster_options = {"skip_idle_ticks": True}


def idle_speed(skip: bool, virtual_seconds: float) -> Tuple[float, int]:
    """(simulated seconds per wall second, ticks run) after the election."""
    with Cluster(3, seed=2, skip_idle_ticks=skip) as c:
        c.wait_leader()
        ticks = c.stats["ticks"]
        start = time.perf_counter()
        c.run_for(virtual_seconds)
        return virtual_seconds / (time.perf_counter() - start), c.stats["ticks"] - ticks


def machine_speed(machine: type, examples: int) -> float:
    """Examples per wall second of ``machine`` over the same derandomized examples."""
    start = time.perf_counter()
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=examples, stateful_step_count=40, derandomize=True, database=None,
            deadline=None, phases=[Phase.generate], suppress_health_check=list(settings().suppress_health_check)))
    except Exception as exc:  # a violation found ends the run early on both sides alike; say so
        print(f"  ({machine.__name__} stopped early: {type(exc).__name__})")
    return examples / (time.perf_counter() - start)


def _traced_steps(examples: int) -> Tuple[float, int, str]:
    """In a child: (wall seconds, steps, digest of every cluster's trace) of the derandomized FifoRaft examples."""
    from harness.fuzz.recording import Recorder
    from harness.sim.cluster import Cluster as SimCluster

    digests, steps = [], [0]
    close, begin = SimCluster.close, Recorder.begin

    def closing(self):
        if not self.closed:
            digests.append(self.trace_digest())
        close(self)

    def counting(self, *args, **kwargs):
        steps[0] += 1
        return begin(self, *args, **kwargs)

    SimCluster.close, Recorder.begin = closing, counting
    start = time.perf_counter()
    machine_speed(_Plain, examples)
    return time.perf_counter() - start, steps[0], hashlib.sha256("".join(digests).encode()).hexdigest()


def pysyncobj_share(examples: int) -> float:
    """The fraction of the FifoRaft examples' wall time spent inside pysyncobj's own code (bench_core)."""
    from bench_core import pysyncobj_time

    with pysyncobj_time() as inside:
        start = time.perf_counter()
        machine_speed(_Plain, examples)
        return inside[0] / (time.perf_counter() - start)


def checkout_speed(checkout: Path, examples: int) -> Tuple[float, str]:
    """(steps per wall second, trace digest) of the FifoRaft examples with ``checkout``'s harness."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(examples)], env=env,
                         cwd=str(checkout), check=True, capture_output=True, text=True).stdout
    wall, steps, digest = json.loads(out.splitlines()[-1])
    return steps / wall, digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    parser.add_argument("--baseline", type=Path, help="a checkout of the harness to compare this one with")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_traced_steps(args.child)))
        return
    if args.baseline is not None:
        here = Path(__file__).resolve().parents[1]
        pairs = [(checkout_speed(args.baseline, args.examples), checkout_speed(here, args.examples))
                 for _ in range(args.repeat)]
        if len({digest for pair in pairs for _, digest in pair}) != 1:
            raise SystemExit("bench_throughput: the two checkouts ran different traces; compare something else")
        before = statistics.median(p[0][0] for p in pairs)
        after = statistics.median(p[1][0] for p in pairs)
        share = statistics.median(pysyncobj_share(args.examples) for _ in range(args.repeat))
        print(f"FifoRaft, {args.examples} derandomized examples, same traces: {args.baseline} {before:.0f} "
              f"steps/s, this checkout {after:.0f} steps/s, after / before {after / before:.2f} "
              f"(median of {args.repeat}); pysyncobj's own code (ticks, message handlers, node "
              f"construction) takes {share:.0%} of this checkout's wall time")
        return
    idle, machine = [], []
    for _ in range(args.repeat):  # interleaved
        idle.append((idle_speed(False, args.idle_seconds), idle_speed(True, args.idle_seconds)))
        machine.append((machine_speed(_Plain, args.examples), machine_speed(_Skipping, args.examples)))
    plain_idle = statistics.median(p[0][0] for p in idle)
    skip_idle = statistics.median(p[1][0] for p in idle)
    plain_m = statistics.median(p[0] for p in machine)
    skip_m = statistics.median(p[1] for p in machine)
    print(f"repeat={args.repeat} examples={args.examples} (medians)")
    print(f"idle run: plain {plain_idle:.0f} sim s/wall s ({idle[0][0][1]} ticks), skipping {skip_idle:.0f} "
          f"({idle[0][1][1]} ticks), ratio {skip_idle / plain_idle:.2f}")
    print(f"FifoRaft: plain {plain_m:.2f} examples/s, skipping {skip_m:.2f}, ratio {skip_m / plain_m:.2f}")


if __name__ == "__main__":
    main()
