"""Throughput of skip_idle_ticks, side by side in one run (issue 12 §4).

Skipping is opt-in (``Cluster(skip_idle_ticks=True)``, or ``cluster_options`` on a machine): it
changes how often the clock is read, so a run's times and trace digest are not those of plain
ticking.  This measures what it buys, interleaving both sides so they see the same machine load:

1. the idle run of bench_core part 2 (3 nodes, heartbeats only): simulated seconds per wall second;
2. the FifoRaft state machine, derandomized, the same examples with and without skipping:
   Hypothesis examples per wall second.

Run: python bench/bench_throughput.py [--repeat R] [--examples N]
"""
from __future__ import annotations

import argparse
import statistics
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    args = parser.parse_args()
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
