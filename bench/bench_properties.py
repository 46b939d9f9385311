"""Property benchmark: what checking, sharding and injected bugs cost, measured side by side in one run.

1. Invariant overhead.  One deterministic sequence of steps (seeded
   ``random.Random``: a 3-5 node ``harness.Cluster``; client writes through the
   leader, partitions, heals, crashes, restarts, forced snapshots; ``run_for(0.25)``
   after each) is executed, interleaved, in three modes: ``check`` (the cluster
   records events, ``record_events=True``, and after every step
   ``SafetyChecker(stream=True).step(cluster.observe(), completed ops,
   cluster.node_errors, cluster.take_events())``, as RaftMachine does),
   ``observe`` (only ``cluster.observe()``, no recording) and ``none``.  Every run must have the
   same ``trace_digest()``.  Target: check wall / observe wall <= 1.3.
2. Invariant cost over a long run.  A 3-node cluster recording events, a write
   every step, a forced snapshot every 25 steps (rotating over the nodes);
   ``SafetyChecker(stream=True).step`` alone is timed on every step.  Mean (and median) per step in a window around
   step 50 and around step N (default 5,000).  Target: ratio ~1 (flat).
3. pytest-xdist scaling of the fifo state machine: ``python -m pytest
   properties/test_raft.py -q -p no:logging --hypothesis-profile=ci -n 1`` and
   ``-n 2`` as subprocesses, interleaved (``--xdist-path properties/`` for the
   whole directory, which now holds other machines too).  The module makes one
   shard per worker and splits max_examples between them, so both runs execute
   the same number of examples; examples = sum of Hypothesis' "N passing, M
   failing, and K invalid test cases" over shards and phases
   (``--hypothesis-show-statistics``).  Examples/second = examples / subprocess
   wall.  Target: -n 2 / -n 1 >= 1.7.  Also shown: the ratio on in-test seconds
   of the busiest worker (start-up excluded), which worker ran each shard (one
   extra untimed ``-v`` run), and ``-n 2 -m fifo``.  The runs use
   ``--raft-known-fixes``: a run that finds a bug stops early and leaves its core
   idle, which measures luck rather than throughput, and unmodified pysyncobj
   has bugs the bench profile finds (FINDINGS.md); ``--xdist-unpatched`` runs
   on unmodified pysyncobj anyway.
4. Injected bugs (if ``harness/adapter/injected_bugs.py`` exists).  For every mutation, the
   fifo ``RaftMachine`` runs under ``inject(name)``, in two parallel worker
   processes (mirroring ``-n 2``), each walking its own Hypothesis seeds
   (``hypothesis.seed``, ``derandomize=False``, no database, generate phase
   only), until the first failure.  Unmodified pysyncobj has real bugs the fifo
   machine finds too (FINDINGS.md), so every failure's example is replayed
   (``@reproduce_failure``) without the mutation: if it fails there as well it
   is a *baseline* failure and that worker moves on to its next seed.  Reported:
   median fuzzing seconds to the first mutation-specific failure, median seconds
   to the first failure of any kind, and the shrunk counterexample length of one
   run with shrinking on (rule steps, ``start_cluster`` and ``teardown`` not
   counted).  A control row fuzzes unmodified pysyncobj the same way.  Each
   row gets ``--budget`` seconds (default 120) split evenly over ``--trials``
   (default 3); a trial with no mutation-specific failure in its share counts
   as not detected.  The shrinking runs go two at a time, each stopped after
   ``--shrink-budget`` seconds (default 120; Hypothesis' own cap is 300).

``--quick`` (smoke test): 200 steps x 3 in part 1, step 500 in part 2, one
pytest run per variant, one 15 s trial per mutation and 2 shrinking runs.
A full run with every part at its defaults takes roughly 15-25 minutes on
2 cores, most of it in part 4 (rows that are never detected use their whole
budget); ``--parts 1,2,3`` alone takes ~3 minutes.

No timing is asserted: the script prints numbers and whether each target is met.

Run: python bench/bench_properties.py [--quick] [--parts 1,2,3,4] [--skip-xdist] [--skip-mutations]
     [--budget S] [--trials N] [--shrink-budget S] [--shrink-max N] [--no-control]
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import logging
import math
import multiprocessing as mp
import os
import queue as queue_module
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from harness import Cluster, SafetyChecker, SafetyViolation
from harness.fuzz.machine import RaftMachine
from harness.environment import REPORT_ENV

ROOT = Path(__file__).resolve().parents[1]


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _walls(runs: Sequence[dict], fmt: str) -> str:
    return ", ".join(fmt.format(r["wall"]) for r in runs)


# ==========================================================================================
# 1. Invariants on vs off, same steps
# ==========================================================================================
STEP_KINDS = ("write", "partition", "heal", "crash", "restart", "snapshot")
STEP_WEIGHTS = (55, 9, 9, 8, 9, 10)
KEYS = ("a", "b", "c")


def make_steps(seed: int, count: int) -> Tuple[int, List[tuple]]:
    """Cluster size and ``count`` abstract steps; node choices are resolved against the live cluster."""
    rng = random.Random(seed)
    nodes = rng.randint(3, 5)
    steps = []
    for kind in rng.choices(STEP_KINDS, STEP_WEIGHTS, k=count):
        if kind == "write":
            steps.append((kind, rng.choice(KEYS)))
        elif kind == "partition":
            steps.append((kind, tuple(sorted(rng.sample(range(nodes), rng.randint(1, nodes - 1))))))
        elif kind == "heal":
            steps.append((kind, None))
        else:  # crash / restart / snapshot: which node, among those it applies to
            steps.append((kind, rng.randrange(1 << 16)))
    return nodes, steps


def apply_step(c: Cluster, step: tuple, value: int) -> None:
    kind, arg = step
    ids = c.node_ids
    if kind == "write":
        leader = c.leader()
        if leader is not None:
            c.put(arg, value, via=leader)
    elif kind == "partition":
        a = [ids[i] for i in arg]
        c.partition(a, [n for n in ids if n not in a])
    elif kind == "heal":
        c.clear_all_filters()
    elif kind == "crash":
        up = c.up_ids()
        if up and len(ids) - len(up) < (len(ids) - 1) // 2:  # keep a majority up so writes go on
            c.crash(up[arg % len(up)])
    elif kind == "restart":
        down = [n for n in ids if not c.is_up(n)]
        if down:
            c.restart(down[arg % len(down)])
    elif kind == "snapshot":
        up = c.up_ids()
        if up:
            c.force_snapshot(up[arg % len(up)])
    c.run_for(0.25)


def run_sequence(seed: int, nodes: int, steps: List[tuple], mode: str) -> dict:
    """Run ``steps`` on a fresh cluster; ``mode`` is "check", "observe" or "none".  Times the steps only."""
    violations: List[str] = []
    with Cluster(nodes, seed, record_events=mode == "check") as c:
        checker = SafetyChecker(stream=True)
        cursor = 0
        start = time.perf_counter()
        for i, step in enumerate(steps):
            apply_step(c, step, i)
            if mode == "check":
                completed, cursor = c.history.completed_since(cursor)
                try:
                    checker.step(c.observe(), completed, c.node_errors, c.take_events())
                except SafetyViolation as v:  # a real pysyncobj bug on this sequence: note it, keep going
                    violations.append(f"step {i}: {str(v).splitlines()[0]}")
            elif mode == "observe":
                c.observe()
        wall = time.perf_counter() - start
        return dict(wall=wall, digest=c.trace_digest(), violations=violations, ops=len(c.history),
                    delivered=c.messages_delivered, crashes=c.stats["crashes"],
                    snapshots=c.stats["snapshots_forced"])


def bench_invariant_overhead(seed: int, count: int, repeat: int) -> dict:
    nodes, steps = make_steps(seed, count)
    modes = ("check", "observe", "none")
    runs: Dict[str, List[dict]] = {m: [] for m in modes}
    for r in range(repeat):  # interleaved, rotating which mode goes first
        order = modes[r % 3:] + modes[:r % 3]
        for m in order:
            runs[m].append(run_sequence(seed, nodes, steps, m))
    digests = {run["digest"] for m in modes for run in runs[m]}
    wall = {m: _median([run["wall"] for run in runs[m]]) for m in modes}
    first = runs["check"][0]
    print(f"[1] invariants on vs off: seed={seed}, {nodes} nodes, {count} steps "
          f"(kinds: {', '.join(f'{k}={sum(s[0] == k for s in steps)}' for k in STEP_KINDS)}), "
          f"repeat={repeat}, medians")
    print(f"    workload: {first['ops']} client ops, {first['delivered']} messages delivered, "
          f"{first['crashes']} crashes, {first['snapshots']} forced snapshots")
    for m in modes:
        print(f"    {m:<8} wall {wall[m]:.3f}s  {count / wall[m]:8.1f} steps/s   "
              f"(runs: {_walls(runs[m], '{:.3f}')})")
    same = len(digests) == 1
    print(f"    trace digest {'identical in all ' + str(3 * repeat) + ' runs' if same else 'DIFFERS between runs'}: "
          f"{sorted(digests)[0] if same else sorted(digests)}")
    if first["violations"]:
        print(f"    NOTE: pysyncobj broke a safety property on this sequence ({len(first['violations'])} "
              f"step(s), checking went on): {first['violations'][0]}")
    ratio = wall["check"] / wall["observe"]
    print(f"    check/observe wall ratio {ratio:.3f}  (target <= 1.3);  check/none {wall['check'] / wall['none']:.3f}")
    return dict(ratio=ratio, ratio_none=wall["check"] / wall["none"], same_digest=same,
                digest=sorted(digests)[0], steps_per_s={m: count / wall[m] for m in modes})


# ==========================================================================================
# 2. Invariant time per step, early vs late in one long run
# ==========================================================================================
def long_run(seed: int, total: int, snapshot_every: int) -> dict:
    times: List[float] = []
    extents: List[Tuple[int, int]] = []  # per step: (longest live log, committed indexes remembered)
    violations = 0
    with Cluster(3, seed, record_events=True) as c:
        c.wait_leader()
        checker = SafetyChecker(stream=True)  # its first step gets every event since the cluster was built
        cursor = 0
        for i in range(1, total + 1):
            leader = c.leader()
            if leader is not None:
                c.put(KEYS[i % 3], i, via=leader)
            if i % snapshot_every == 0:
                up = c.up_ids()
                c.force_snapshot(up[(i // snapshot_every) % len(up)])
            c.run_for(0.25)
            completed, cursor = c.history.completed_since(cursor)
            states = c.observe()
            events = c.take_events()
            t = time.perf_counter()
            try:
                checker.step(states, completed, c.node_errors, events)
            except SafetyViolation:
                violations += 1
            times.append(time.perf_counter() - t)
            extents.append((max(s.last_index - s.first_index + 1 for s in states if s.up),
                            len(checker.logs.committed)))
        committed = sum(op.outcome == "ok" for op in c.history)
    return dict(times=times, extents=extents, violations=violations, committed=committed, ops=len(c.history))


def bench_long_run(seed: int, late: int, half: int, snapshot_every: int, repeat: int) -> dict:
    early = 50
    total = late + half
    lo_e, hi_e = early - half, early + half  # window steps [lo, hi], 1-based
    lo_l, hi_l = late - half, late + half
    rows = []
    for _ in range(repeat):
        start = time.perf_counter()
        r = long_run(seed, total, snapshot_every)
        wall = time.perf_counter() - start
        e = r["times"][lo_e - 1:hi_e]
        l_ = r["times"][lo_l - 1:hi_l]
        rows.append(dict(wall=wall, mean_e=statistics.fmean(e), mean_l=statistics.fmean(l_),
                         med_e=statistics.median(e), med_l=statistics.median(l_),
                         ext_e=r["extents"][early - 1], ext_l=r["extents"][late - 1],
                         violations=r["violations"], committed=r["committed"], ops=r["ops"]))
    mean_e = _median([x["mean_e"] for x in rows])
    mean_l = _median([x["mean_l"] for x in rows])
    med_e = _median([x["med_e"] for x in rows])
    med_l = _median([x["med_l"] for x in rows])
    x = rows[0]
    print(f"[2] SafetyChecker.step per step, one long run: 3 nodes, seed={seed}, {total} steps, a write every "
          f"step, force_snapshot every {snapshot_every} steps; repeat={repeat} (median over runs)")
    print(f"    run wall {_walls(rows, '{:.1f}s')}; {x['committed']}/{x['ops']} writes "
          f"committed; longest log at step {early}: {x['ext_e'][0]} entries, at step {late}: {x['ext_l'][0]} "
          f"entries; committed indexes remembered by the checker: {x['ext_e'][1]} -> {x['ext_l'][1]}")
    if x["violations"]:
        print(f"    NOTE: {x['violations']} step(s) raised SafetyViolation (a pysyncobj bug), timing kept")
    print(f"    steps {lo_e}-{hi_e}: mean {mean_e * 1e6:7.1f} us  median {med_e * 1e6:7.1f} us")
    print(f"    steps {lo_l}-{hi_l}: mean {mean_l * 1e6:7.1f} us  median {med_l * 1e6:7.1f} us")
    print(f"    late/early ratio: mean {mean_l / mean_e:.2f}, median {med_l / med_e:.2f}  (target ~1, flat)")
    return dict(mean_e=mean_e, mean_l=mean_l, ratio=mean_l / mean_e, med_ratio=med_l / med_e,
                early=(lo_e, hi_e), late=(lo_l, hi_l))


# ==========================================================================================
# 3. pytest-xdist -n 2 vs -n 1
# ==========================================================================================
_COUNTS = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid test cases")
_PHASE = re.compile(r"during \w+ phase \(([\d.]+) seconds\)")
_TEST = re.compile(r"^(\S+::\S+):\s*$")
_WORKER = re.compile(r"^\[(gw\d+)\]\s+\[\s*\d+%\]\s+(\w+)\s+(\S+)")


def run_pytest(workers: int, profile: str, timeout: float, path: str, extra: Sequence[str] = (),
               verbose: bool = False) -> dict:
    cmd = [sys.executable, "-m", "pytest", path, "-v" if verbose else "-q", "-p", "no:logging",
           f"--hypothesis-profile={profile}", "-n", str(workers), "--hypothesis-show-statistics", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    examples = failing = 0
    shard_seconds: Dict[str, float] = {}
    worker_of: Dict[str, str] = {}
    current = None
    for line in out.splitlines():
        m = _WORKER.match(line)
        if m:
            worker_of[m.group(3)] = m.group(1) + ("" if m.group(2) in ("PASSED", "FAILED") else f" ({m.group(2)})")
            continue
        m = _TEST.match(line)
        if m:
            current = m.group(1)
            shard_seconds.setdefault(current, 0.0)
            continue
        m = _PHASE.search(line)
        if m and current is not None:
            shard_seconds[current] += float(m.group(1))
        m = _COUNTS.search(line)
        if m:
            examples += sum(int(g) for g in m.groups())
            failing += int(m.group(2))
    failed_tests = re.findall(r"^FAILED (\S+)", out, re.M)
    error_lines = [ln[1:].strip() for ln in out.splitlines() if ln.startswith("E ") and ln[1:].strip()]
    return dict(cmd=" ".join(cmd[1:]), wall=wall, rc=proc.returncode, examples=examples, failing=failing,
                shards=len(shard_seconds), in_test=shard_seconds, failed_tests=failed_tests, worker_of=worker_of,
                first_error=error_lines[0] if error_lines else None, tail=out[-2000:])


def _busiest(in_test: Dict[str, float], worker_of: Dict[str, str]) -> float:
    """In-test seconds of the busiest xdist worker (shards without a known worker count as their own)."""
    per: Dict[str, float] = {}
    for test, secs in in_test.items():
        w = worker_of.get(test, test)
        per[w] = per.get(w, 0.0) + secs
    return max(per.values(), default=float("nan"))


def bench_xdist(repeat: int, profile: str, timeout: float, path: str, known_fixes: bool = True) -> dict:
    common = ("--raft-known-fixes",) if known_fixes else ()
    variants = {"-n 1": (1, common), "-n 2": (2, common), "-n 2 -m fifo": (2, common + ("-m", "fifo"))}
    runs: Dict[str, List[dict]] = {v: [] for v in variants}
    names = list(variants)
    for r in range(repeat):  # interleaved, rotating which goes first
        for v in names[r % 3:] + names[:r % 3]:
            n, extra = variants[v]
            runs[v].append(run_pytest(n, profile, timeout, path, extra))
    # pytest -q does not say which worker ran what: one more (untimed) run of each -n 2 variant with -v does.
    worker_of: Dict[str, Dict[str, str]] = {}
    for v, (n, extra) in variants.items():
        worker_of[v] = run_pytest(n, profile, timeout, path, extra, verbose=True)["worker_of"] if n > 1 else {}
    print(f"[3] pytest-xdist: python -m pytest {path} -q -p no:logging --hypothesis-profile={profile} "
          f"-n N --hypothesis-show-statistics {' '.join(common)} [-m fifo]; repeat={repeat}, interleaved, medians")
    res = {}
    for v, (n, _) in variants.items():
        rs = runs[v]
        for x in rs:
            if x["rc"] not in (0, 1) or x["examples"] == 0:
                print(f"    {v}: pytest exited {x['rc']} with {x['examples']} examples counted; output tail:\n"
                      + "\n".join("      " + ln for ln in x["tail"].splitlines()[-25:]))
            elif x["rc"] == 1:
                print(f"    {v}: FAILED (the fuzzer found a failure; its examples are still counted): "
                      f"{', '.join(x['failed_tests']) or '?'}: {x['first_error']}")
        good = [x for x in rs if x["examples"]]
        eps = [x["examples"] / x["wall"] for x in good]
        busy = [sum(x["in_test"].values()) if n == 1 else _busiest(x["in_test"], worker_of[v]) for x in good]
        fifo = {t: w for t, w in worker_of[v].items() if "Fifo" in t}
        res[v] = dict(wall=_median([x["wall"] for x in good]), eps=_median(eps),
                      examples=[x["examples"] for x in good], shards=[x["shards"] for x in good],
                      busy=_median(busy), busy_eps=_median([x["examples"] / b for x, b in zip(good, busy) if b]),
                      shard_secs=[sorted(x["in_test"].values()) for x in good],
                      failed=sum(x["rc"] == 1 for x in rs),
                      serialized=len(fifo) > 1 and len(set(fifo.values())) == 1)
        print(f"    {v:<12} wall {res[v]['wall']:6.2f}s  examples {res[v]['examples']} over "
              f"{res[v]['shards'][0] if good else '?'} shard(s)  {res[v]['eps']:5.2f} examples/s  "
              f"(runs: {_walls(rs, '{:.2f}s')}); in-test seconds per shard "
              f"{', '.join('+'.join(f'{x:.2f}' for x in ss) for ss in res[v]['shard_secs'])}")
        if worker_of[v]:
            print(f"    {'':<12} workers (extra {v} -v run): "
                  f"{', '.join(f'{t.split(chr(58) * 2)[1]}: {w}' for t, w in sorted(worker_of[v].items()))}")
    base = res["-n 1"]
    ratio = res["-n 2"]["eps"] / base["eps"]
    busy_ratio = res["-n 2"]["busy_eps"] / base["busy_eps"]
    ratio_m = res["-n 2 -m fifo"]["eps"] / base["eps"]
    busy_ratio_m = res["-n 2 -m fifo"]["busy_eps"] / base["busy_eps"]
    overhead = {v: res[v]["wall"] - res[v]["busy"] for v in variants}
    if res["-n 2"]["serialized"]:
        items = len(worker_of["-n 2"])
        print(f"    NOTE: with -n 2 both fifo shards ran on one worker, one after the other: {items} items are "
              f"collected (skipped ones count), and xdist's load scheduler hands each worker a chunk of "
              f"consecutive items once there are >= 2 per worker; -m fifo deselects the others, leaving 2 "
              f"items, which it deals round-robin")
    print(f"    examples/s -n 2 / -n 1 (subprocess wall): {ratio:.2f}  (target >= 1.7 on 2 cores, "
          f"{os.cpu_count()} here); on in-test seconds of the busiest worker only: {busy_ratio:.2f}")
    print(f"    informative, -n 2 -m fifo / -n 1: {ratio_m:.2f} (wall), {busy_ratio_m:.2f} (in-test seconds)")
    print(f"    time outside the tests (wall - busiest worker's in-test seconds): "
          f"{', '.join(f'{v} {overhead[v]:.2f}s' for v in variants)}")
    return dict(ratio=ratio, busy_ratio=busy_ratio, ratio_m=ratio_m, busy_ratio_m=busy_ratio_m, res=res,
                serialized=res["-n 2"]["serialized"])


# ==========================================================================================
# 4. Injected bugs: time to detect, shrunk length
# ==========================================================================================
_FIRST_FAIL: List[float] = []


class FifoRaft(RaftMachine):
    """The fifo state machine of properties/test_raft.py, noting when it first fails (for timing only)."""

    network = "fifo"

    def _fail(self, exc: AssertionError) -> None:
        _FIRST_FAIL.append(time.perf_counter())
        super()._fail(exc)


def _machine_settings(step_count: int, shrink: bool, max_examples: int = 10 ** 8):
    from hypothesis import HealthCheck, Phase, settings

    return settings(max_examples=max_examples, stateful_step_count=step_count, derandomize=False,
                    database=None, deadline=None, print_blob=True, report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate])


def _run_machine(mutation: Optional[str], seed_value: Optional[int], step_count: int, shrink: bool,
                 reproduce: Optional[Tuple[str, bytes]] = None) -> Optional[BaseException]:
    """``run_state_machine_as_test`` on FifoRaft (via ``get_state_machine_test``, its one-line core,
    so ``@seed`` / ``@reproduce_failure`` can be applied); returns the exception or None."""
    from hypothesis import reproduce_failure, seed
    from hypothesis.stateful import get_state_machine_test

    test = get_state_machine_test(FifoRaft, settings=_machine_settings(step_count, shrink))
    if seed_value is not None:
        seed(seed_value)(test)
    if reproduce is not None:
        reproduce_failure(*reproduce)(test)
    with contextlib.ExitStack() as stack:
        if mutation is not None:
            from harness.adapter.patching import inject

            stack.enter_context(inject(mutation))  # MutationNotApplicable propagates: not a finding
        try:
            test()
        except Exception as e:  # every failure of the test is a result here
            return e
    return None


def _notes(exc: BaseException) -> List[str]:
    notes = list(getattr(exc, "__notes__", []))
    for sub in getattr(exc, "exceptions", ()):  # an exception group
        notes.extend(getattr(sub, "__notes__", []))
    return notes


def _blob(exc: BaseException) -> Optional[Tuple[str, bytes]]:
    m = re.search(r"@reproduce_failure\((.*?)\) as a decorator", "\n".join(_notes(exc)), re.S)
    return ast.literal_eval("(" + m.group(1) + ")") if m else None


def _signature(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:110] if text else ''}"


def _fails_unmutated(blob: Optional[Tuple[str, bytes]], step_count: int) -> Optional[bool]:
    """Replay one example without any mutation: does unmodified pysyncobj fail it too?"""
    from hypothesis.errors import DidNotReproduce

    if blob is None:
        return None
    exc = _run_machine(None, None, step_count, shrink=False, reproduce=blob)
    return exc is not None and not isinstance(exc, DidNotReproduce)


def _scratch_dir() -> str:
    """Where a worker's clusters keep their files: removed by the parent, also after killing the worker."""
    shm = "/dev/shm"  # what harness.Cluster picks by default when it can
    return tempfile.mkdtemp(prefix="bench-properties-",
                            dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None)


def _setup_worker(scratch: str) -> None:
    logging.disable(logging.CRITICAL)  # pysyncobj logs "truncating already-applied log entries" etc.
    sys.stdout = open(os.devnull, "w")
    os.environ.pop(REPORT_ENV, None)  # no counterexample files from benchmark runs
    if "base_dir" in inspect.signature(Cluster).parameters:
        # RaftMachine passes pysyncobj_conf on to Cluster(...), whose own base_dir keyword picks the directory.
        FifoRaft.pysyncobj_conf = {**FifoRaft.pysyncobj_conf, "base_dir": scratch}


def _detect_worker(mutation: Optional[str], seed0: int, stride: int, step_count: int, q, wid: int,
                   scratch: str) -> None:
    """Fuzz seeds seed0, seed0+stride, ... until a failure unmodified pysyncobj does not have."""
    try:
        _setup_worker(scratch)
        import harness.adapter.fixes  # noqa: F401  (import cost outside the timing; inject() looks
        import harness.adapter.injected_bugs  # noqa: F401  up names in both registries)

        q.put(("ready", wid))
        fuzz = 0.0
        first_any = None
        for k in range(10 ** 9):
            s = seed0 + k * stride
            del _FIRST_FAIL[:]
            t = time.perf_counter()
            exc = _run_machine(mutation, s, step_count, shrink=False)
            end = time.perf_counter()
            if exc is None:  # max_examples exhausted without a failure
                fuzz += end - t
                continue
            fuzz += (_FIRST_FAIL[0] if _FIRST_FAIL else end) - t
            sig = _signature(exc)
            blob = _blob(exc)
            if blob is None:  # not a failing example Hypothesis found (e.g. Unsatisfiable): report, stop
                q.put(("error", wid, f"seed {s}: {sig}"))
                return
            first_any = fuzz if first_any is None else first_any
            if mutation is not None and _fails_unmutated(blob, step_count):
                q.put(("baseline", wid, s, fuzz, sig))
                continue
            q.put(("detected", wid, s, fuzz, first_any, sig))
            return
    except BaseException as e:  # noqa: BLE001
        import traceback

        q.put(("error", wid, f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}"))


def _rule_names() -> set:
    return {n for n in dir(FifoRaft) if hasattr(getattr(FifoRaft, n, None), "hypothesis_stateful_rule")}


def _shrink_worker(mutation: Optional[str], seed_value: int, step_count: int, q, scratch: str) -> None:
    try:
        _setup_worker(scratch)
        t = time.perf_counter()
        exc = _run_machine(mutation, seed_value, step_count, shrink=True)
        wall = time.perf_counter() - t
        if exc is None:
            q.put(("shrunk", mutation, dict(ok=False, why="no failure with this seed", wall=wall)))
            return
        rules = _rule_names()
        lines = [n.strip() for note in _notes(exc) for n in note.splitlines()]
        steps = [ln for ln in lines if ln.startswith("state.") and ln[6:].split("(")[0] in rules]
        q.put(("shrunk", mutation, dict(ok=True, steps=len(steps), program=steps, wall=wall,
                                        sig=_signature(exc), baseline=_fails_unmutated(_blob(exc), step_count))))
    except BaseException as e:  # noqa: BLE001
        q.put(("shrunk", mutation, dict(ok=False, why=f"{type(e).__name__}: {e}", wall=float("nan"))))


def _stop(procs) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join(5)


def detection_trial(ctx, mutation: Optional[str], trial: int, workers: int, limit: float,
                    step_count: int) -> dict:
    q = ctx.Queue()
    scratch = _scratch_dir()
    procs = [ctx.Process(target=_detect_worker, args=(mutation, 1000 * trial + w, workers, step_count, q, w,
                                                      scratch), daemon=True) for w in range(workers)]
    for p in procs:
        p.start()
    res = dict(detected=False, time=math.inf, first_any=None, baseline=0, sig=None, seed=None, errors=[])

    def get(timeout: float):
        """Next message, None on timeout or when every worker has exited and the queue is empty."""
        end = time.perf_counter() + timeout
        while True:
            try:
                return q.get(timeout=max(min(end - time.perf_counter(), 1.0), 0.01))
            except queue_module.Empty:
                if time.perf_counter() >= end:
                    return None
                if not any(p.is_alive() for p in procs) and q.empty():
                    res["errors"].append("worker processes exited: " +
                                         ", ".join(str(p.exitcode) for p in procs))
                    return None

    try:
        ready = 0
        while ready < workers:
            msg = get(120)
            if msg is None or msg[0] == "error":
                res["errors"].append(msg[2] if msg else "workers did not start within 120 s")
                return res
            ready += msg[0] == "ready"
        start = time.perf_counter()
        while True:
            left = start + limit - time.perf_counter()
            msg = get(left) if left > 0 else None
            if msg is None:
                break
            if msg[0] == "baseline":
                res["baseline"] += 1
                res["first_any"] = msg[3] if res["first_any"] is None else min(res["first_any"], msg[3])
            elif msg[0] == "detected":
                _, _, s, fuzz, first_any, sig = msg
                res.update(detected=True, time=fuzz, sig=sig, seed=s, wall=time.perf_counter() - start)
                res["first_any"] = first_any if res["first_any"] is None else min(res["first_any"], first_any)
                break
            elif msg[0] == "error":
                res["errors"].append(msg[2])
                if len(res["errors"]) == workers:
                    break
    finally:
        _stop(procs)
        shutil.rmtree(scratch, ignore_errors=True)
    return res


def shrink_all(ctx, jobs: List[Tuple[Optional[str], int]], step_count: int, limit: float, parallel: int) -> Dict[str, dict]:
    """Run the shrinking runs ``parallel`` at a time (only their output counts, not their time)."""
    q = ctx.Queue()
    out: Dict[str, dict] = {}
    pending = list(jobs)
    running: Dict[str, Tuple[mp.Process, float]] = {}
    scratch = _scratch_dir()
    try:
        _shrink_loop(ctx, q, out, pending, running, step_count, limit, parallel, scratch)
    finally:
        _stop([p for p, _ in running.values()])
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _shrink_loop(ctx, q, out, pending, running, step_count, limit, parallel, scratch) -> None:
    while pending or running:
        while pending and len(running) < parallel:
            name, s = pending.pop(0)
            p = ctx.Process(target=_shrink_worker, args=(name, s, step_count, q, scratch), daemon=True)
            p.start()
            running[name] = (p, time.perf_counter())
        try:
            _, name, res = q.get(timeout=1.0)
            if name in running:
                out[name] = res
                _stop([running.pop(name)[0]])
        except queue_module.Empty:
            pass
        for name, (p, started) in list(running.items()):
            if time.perf_counter() - started > limit:
                _stop([p])
                running.pop(name)
                out[name] = dict(ok=False, why=f"shrinking not finished within {limit:.0f}s", wall=limit)
            elif not p.is_alive() and q.empty():
                running.pop(name)
                out.setdefault(name, dict(ok=False, why=f"worker died (exit {p.exitcode})", wall=float("nan")))


def _detect_text(r: dict, long: bool = False) -> str:
    if not math.isinf(r["median"]):
        return f"median {r['median']:.2f}s" if long else f"{r['median']:.2f}s"
    if r["detected"] == 0:
        return "worker error, see below" if r["errors"] else "not detected within budget"
    return f"median > {r['limit']:.0f}s per trial"


def _label(name: Optional[str]) -> str:
    return name or "control: unmodified"


def bench_mutations(names: List[str], trials: int, workers: int, budget: float, shrink_budget: float,
                    step_count: int, control: bool, shrink_max: Optional[int]) -> dict:
    ctx = mp.get_context("spawn")
    limit = budget / trials
    print(f"[4] injected bugs: FifoRaft (fifo RaftMachine, stateful_step_count={step_count}) under inject(name); "
          f"{trials} trial(s) per mutation, each {workers} parallel worker process(es) with their own seeds "
          f"(mirrors -n {workers}), {limit:.0f}s per trial ({budget:.0f}s per mutation); a failure whose "
          f"example also fails on unmodified pysyncobj is 'baseline' and fuzzing goes on")
    results: Dict[str, dict] = {}
    rows = ([None] if control else []) + list(names)
    for name in rows:
        label = _label(name)
        ts = [detection_trial(ctx, name, t, workers, limit, step_count) for t in range(trials)]
        times = sorted(x["time"] for x in ts)
        anys = sorted(x["first_any"] if x["first_any"] is not None else math.inf for x in ts)
        r = dict(trials=ts, detected=sum(x["detected"] for x in ts), median=_median(times),
                 median_any=_median(anys), baseline=sum(x["baseline"] for x in ts),
                 seed=next((x["seed"] for x in ts if x["detected"]), None),
                 sig=next((x["sig"] for x in ts if x["detected"]), None))
        r["errors"] = [e for x in ts for e in x["errors"]]
        results[label] = r
        r["limit"] = limit
        med = _detect_text(r, long=True)
        per = ", ".join("-" if math.isinf(x["time"]) else f"{x['time']:.2f}" for x in ts)
        print(f"    {label:<28} {r['detected']}/{trials} detected, {med} (trials: {per})"
              + (f"; baseline failures hit: {r['baseline']}" if r["baseline"] else ""))
        if r["sig"]:
            print(f"      {'first failure' if name is None else 'detected as'}: {r['sig']}")
        for x in ts:
            for err in x["errors"]:
                print(f"      worker error: {err.splitlines()[0]}")
    jobs = [(n, results[_label(n)]["seed"]) for n in rows if results[_label(n)]["seed"] is not None]
    if shrink_max is not None and len(jobs) > shrink_max:
        print(f"    shrinking only {shrink_max} of {len(jobs)} rows (--shrink-max)")
        jobs = jobs[-shrink_max:] if shrink_max else []
    if jobs:
        parallel = min(2, os.cpu_count() or 1)
        print(f"    shrinking one detecting seed per row ({len(jobs)} runs, {parallel} at a time, "
              f"{shrink_budget:.0f}s each; only their output counts) ...")
        shrunk = shrink_all(ctx, jobs, step_count, shrink_budget, parallel=parallel)
        for n, _ in jobs:
            s = shrunk.get(n, dict(ok=False, why="no result", wall=float("nan")))
            results[_label(n)]["shrunk"] = s
            if s["ok"]:
                flag = (" [the shrunk example also fails on unmodified pysyncobj]"
                        if n is not None and s.get("baseline") else "")
                print(f"    {_label(n):<28} shrunk to {s['steps']} steps in {s['wall']:.1f}s: {s['sig']}{flag}")
                print("      " + "; ".join(x[6:] for x in s["program"]))
            else:
                print(f"    {_label(n):<28} shrink: {s['why']}")
    return results


# ==========================================================================================
def main() -> None:
    logging.disable(logging.WARNING)  # pysyncobj's own warnings (e.g. after a crash) are not benchmark output
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, for smoke testing")
    parser.add_argument("--seed", type=int, default=3, help="seed of part 1's step sequence and cluster")
    parser.add_argument("--steps", type=int, help="part 1: steps in the sequence (default 2000, quick 200)")
    parser.add_argument("--repeat", type=int, help="part 1: runs per mode (default 7, quick 3)")
    parser.add_argument("--long-steps", type=int, help="part 2: the late window's centre (default 5000, quick 500)")
    parser.add_argument("--long-repeat", type=int, help="part 2: long runs (default 5, quick 1)")
    parser.add_argument("--parts", default="1,2,3,4", help="which parts to run, e.g. 1,2 or 4 (default all)")
    parser.add_argument("--skip-xdist", action="store_true", help="skip part 3 (pytest -n 1 vs -n 2)")
    parser.add_argument("--xdist-repeat", type=int, help="part 3: runs per -n value (default 3, quick 1)")
    parser.add_argument("--xdist-profile", default="ci", help="part 3: Hypothesis profile (default ci)")
    parser.add_argument("--xdist-path", default="properties/test_raft.py",
                        help="part 3: what pytest runs (default properties/test_raft.py: the fifo machine, the "
                             "unreliable one skipped; properties/ also holds other machines now)")
    parser.add_argument("--xdist-unpatched", action="store_true",
                        help="part 3: unmodified pysyncobj (runs that find a bug stop early: noisy)")
    parser.add_argument("--skip-mutations", action="store_true", help="skip part 4 (injected bugs)")
    parser.add_argument("--mutations", help="part 4: comma-separated names (default: all in INJECTED_BUGS)")
    parser.add_argument("--trials", type=int, help="part 4: detection trials per mutation (default 3, quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="part 4: parallel processes per trial (default 2)")
    parser.add_argument("--budget", type=float, help="part 4: seconds per mutation, split over trials "
                                                      "(default 120, quick 15)")
    parser.add_argument("--shrink-budget", type=float, help="part 4: seconds per shrinking run (default 120, quick 90)")
    parser.add_argument("--shrink-max", type=int, help="part 4: shrink at most this many rows (default all, quick 2)")
    parser.add_argument("--step-count", type=int, default=40, help="part 4: stateful_step_count (ci profile: 40)")
    parser.add_argument("--no-control", action="store_true", help="part 4: skip the unmutated control row")
    a = parser.parse_args()
    q = a.quick
    steps = a.steps or (200 if q else 2000)
    repeat = a.repeat or (3 if q else 7)
    late = a.long_steps or (500 if q else 5000)
    long_repeat = a.long_repeat or (1 if q else 5)
    xdist_repeat = a.xdist_repeat or (1 if q else 3)
    trials = a.trials or (1 if q else 3)
    budget = a.budget or (15.0 if q else 120.0)
    shrink_budget = a.shrink_budget or (90.0 if q else 120.0)
    shrink_max = a.shrink_max if a.shrink_max is not None else (2 if q else None)

    t_all = time.perf_counter()
    print(f"bench_properties: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f} at start, {'quick' if q else 'full'} sizes")
    summary: List[Tuple[str, str, str, str]] = []

    parts = {p.strip() for p in a.parts.split(",")}
    if "1" in parts:
        inv = bench_invariant_overhead(a.seed, steps, repeat)
        summary.append(("invariants on/off wall (check/observe)", f"{inv['ratio']:.2f}", "<= 1.3",
                        "met" if inv["ratio"] <= 1.3 else "NOT met"))
        summary.append(("  steps/s check | observe | none",
                        " | ".join(f"{inv['steps_per_s'][m]:.0f}" for m in ("check", "observe", "none")), "", ""))
        summary.append(("  identical trace digest in every run", "yes" if inv["same_digest"] else "NO", "yes",
                        "met" if inv["same_digest"] else "NOT met"))

    if "2" in parts:
        lr = bench_long_run(a.seed, late, 25, 25, long_repeat)
        summary.append((f"invariant us/step, steps {lr['early'][0]}-{lr['early'][1]} | "
                        f"{lr['late'][0]}-{lr['late'][1]}", f"{lr['mean_e'] * 1e6:.1f} | {lr['mean_l'] * 1e6:.1f}",
                        "", ""))
        summary.append(("  late/early (mean; median)", f"{lr['ratio']:.2f}; {lr['med_ratio']:.2f}", "~1 (0.67-1.5)",
                        "met" if 0.67 <= lr["ratio"] <= 1.5 else "NOT met"))

    if "3" not in parts:
        pass
    elif a.skip_xdist:
        print("[3] pytest-xdist: skipped (--skip-xdist)")
    else:
        xd = bench_xdist(xdist_repeat, a.xdist_profile, timeout=1800, path=a.xdist_path,
                         known_fixes=not a.xdist_unpatched)
        failed = sum(r["failed"] for r in xd["res"].values())
        summary.append(("examples/s -n 2 / -n 1 (wall)", f"{xd['ratio']:.2f}", ">= 1.7",
                        ("met" if xd["ratio"] >= 1.7 else "NOT met")
                        + (f" ({failed} run(s) found a bug)" if failed else "")))
        summary.append(("  examples/s -n 1 | -n 2 | -n 2 -m fifo",
                        " | ".join(f"{r['eps']:.1f}" for r in xd["res"].values()), "", ""))
        summary.append(("  -n 2 / -n 1, busiest worker's in-test seconds", f"{xd['busy_ratio']:.2f}", "",
                        "fifo shards serialized on one worker" if xd["serialized"] else ""))
        summary.append(("  -n 2 -m fifo / -n 1 (wall; in-test)", f"{xd['ratio_m']:.2f}; {xd['busy_ratio_m']:.2f}",
                        "", "(informative)"))

    mutations_file = ROOT / "harness" / "adapter" / "injected_bugs.py"
    run_mutations = "4" in parts and not a.skip_mutations and mutations_file.exists()
    if "4" not in parts:
        pass
    elif a.skip_mutations:
        print("[4] injected bugs: skipped (--skip-mutations)")
    elif not mutations_file.exists():
        print("[4] injected bugs: skipped, harness/adapter/injected_bugs.py does not exist")
    else:
        from harness.adapter.injected_bugs import INJECTED_BUGS

        names = a.mutations.split(",") if a.mutations else list(INJECTED_BUGS)
        unknown = [n for n in names if n not in INJECTED_BUGS]
        if unknown:
            parser.error(f"unknown mutation(s) {unknown}; harness.adapter.injected_bugs.INJECTED_BUGS has {list(INJECTED_BUGS)}")
        mres = bench_mutations(names, trials, a.workers, budget, shrink_budget, a.step_count, not a.no_control,
                               shrink_max)
        for label, r in mres.items():
            s = r.get("shrunk")
            shr = "" if s is None else (f"; shrunk to {s['steps']} steps" + (
                " (also fails unmodified)" if s.get("baseline") and not label.startswith("control") else "")
                if s["ok"] else "; " + s["why"][:45])
            anyf = f"> {r['limit']:.0f}s" if math.isinf(r["median_any"]) else f"{r['median_any']:.2f}s"
            summary.append((f"seeded: {label}", f"{_detect_text(r)} ({r['detected']}/{len(r['trials'])} detected)",
                            "", f"any failure {anyf}{shr}"))

    print()
    print(f"summary ({'quick' if q else 'full'} sizes, {time.perf_counter() - t_all:.0f}s total, "
          f"load average {os.getloadavg()[0]:.2f} at end)")
    head = ("measure", "value", "target", "")
    w = [max(len(row[i]) for row in [head] + summary) for i in range(4)]
    print(f"  {head[0]:<{w[0]}}  {head[1]:<{w[1]}}  {head[2]:<{w[2]}}  {head[3]}")
    for row in summary:
        print(f"  {row[0]:<{w[0]}}  {row[1]:<{w[1]}}  {row[2]:<{w[2]}}  {row[3]}")
    if run_mutations:
        print("  (seeded rows: median fuzzing seconds to a failure unmodified pysyncobj does not have, "
              f"with {a.workers} workers in parallel (detected/trials); 'any failure' also counts failures "
              "unmodified pysyncobj has; the control row counts any failure of unmodified pysyncobj; "
              "shrunk length = rule steps, start_cluster and teardown not counted)")


if __name__ == "__main__":
    main()
