"""Time to find: how long ``raft-harness fuzz`` takes to find each injected bug, on each pysyncobj release.

Why: a checker that would catch a bug is worth little if a campaign does not reach the bug in the time a
user gives it.  This runs the real command line a user runs, from its start (pytest and xdist start-up
included) to its first violation, several times with independent random seeds, so a row says how
often and how soon a bug is found, not whether one lucky example sequence finds it.

For each injected bug (:data:`harness.adapter.injected_bugs.INJECTED_BUGS`) and each release, N campaigns::

    RAFT_HARNESS_INJECT=<bug> PYTHONPATH=<release dir>/<version>:<this checkout> \\
        python -m harness fuzz --properties bench/properties/test_injected_campaign.py \\
        --workers 2 --budget B --seed S --known-fixes --report DIR

A release whose source lacks the code a bug patches is "n/a" for it (probed in a child on that release,
which also checks ``pysyncobj.version``).  Seeds come from ``random.Random`` seeded with ``--seed``, the
release and the row, so the table is reproducible in its choice of seeds, a row keeps its seeds whatever
else is run (``--targets`` arms of one bug are paired), and every campaign has a seed of its own.

Read back from each campaign: ``summary.json`` (each violation's ``first_hit``, seconds from the
campaign's start, and its triage label) and each ``counterexample.json`` (the invariants it broke, the
length of the minimised counterexample, ``minimized.minimized``, and whether it is proven 1-minimal).

* A campaign *finds* the bug when a violation labelled ``injected: <bug>`` appears within the budget.
  Triage labels every reproduced violation of a run with an injected bug that way, so a row only counts
  when the release's **control** row (N campaigns, no injection, the same fixes, the same budget) stays
  green; the table flags the rows of a release whose control did not.
* ``--also-ledger`` adds a row per ledger bug (:data:`harness.ledger.bugs.LEDGER`) the release has and the
  fifo machine can reach: no injection, every fix but that bug's own installed (through
  ``RAFT_HARNESS_INJECT``), found when triage names it (``known: finding N``).  A ledger bug without an
  in-process fix cannot be named by triage; its campaign would be the control's (every fix on, none for
  it), so its row points there.
* ``--without-fix F`` leaves fix ``F`` out of every row, the control's included: a fix can close the
  path by which an injected bug shows (finding 21's, ``replies_of_current_term_only``, drops the stale
  acknowledgements through which a leader commits an older-term entry early, ``commit_old_term``).

Columns: found (k/N), median and worst seconds to the first violation (a miss counts as worse than any
time), the median number of examples the finding shard ran up to its first failure (from the campaign's
per-example statistics; it does not depend on the machine's load, so it is what to compare between runs
made at different times, e.g. with and without guidance), the invariants and labels seen, the minimised
length (smallest-largest over the campaigns; ``+``: the minimiser's time bound, ``--minimize-seconds``,
or the CLI's shrink grace stopped it before it was proven 1-minimal).  The machine's load average is
sampled at every campaign's start and end and printed with the table: on a shared machine the seconds
are wall-clock seconds of a share of the cores.

Run: python bench/bench_time_to_find.py [--bugs a,b] [--releases 0.3.16,0.3.17] [--campaigns N]
     [--budget S] [--jobs J] [--seed S] [--targets none|all|a,b] [--minimize-seconds S] [--also-ledger]
     [--without-fix F] [--no-control] [--machine raft|nemesis] [--json OUT]
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from harness.adapter.fixes import KNOWN_FIXES
from harness.adapter.injected_bugs import INJECTED_BUGS
from harness.environment import CAMPAIGN_MACHINE_ENV, INJECT_ENV, TARGETS_ENV
from harness.fuzz.guidance import parse_targets
from harness.fuzz.workers import report_dir_name
from harness.ledger.bugs import LEDGER, RELEASES, Bug, known_fixes

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = "bench/properties/test_injected_campaign.py"
CONTROL = "(control)"


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: what a campaign installs and what it must find."""

    bug: str  # an injected bug's name, "finding N", or CONTROL
    release: str
    inject: Tuple[str, ...] = ()  # RAFT_HARNESS_INJECT
    known_fixes: bool = True  # --known-fixes
    ledger_id: Optional[int] = None
    na: str = ""  # why the row is not run on this release

    def expects(self, label: Optional[str]) -> bool:
        """Whether a violation with this triage label is the bug the row looks for."""
        if label is None or self.bug == CONTROL:
            return False
        if self.ledger_id is not None:
            return label.startswith("known") and str(self.ledger_id) in re.findall(r"\d+", label)
        return label == f"injected: {self.bug}"


# --- the releases ---------------------------------------------------------------------------------
def _pythonpath(release_dir: Path, release: str) -> str:
    rest = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(release_dir / release), str(ROOT)] + ([rest] if rest else []))


def probe_here() -> Dict[str, Any]:
    """In a child on one release: its version and which injected bugs and fixes apply to it."""
    import pysyncobj.version

    return {"version": pysyncobj.version.VERSION,
            "bugs": {name: m.applies() for name, m in INJECTED_BUGS.items()},
            "fixes": {name: KNOWN_FIXES[name].applies() for name in known_fixes()}}  # what --known-fixes installs


def probe_release(release_dir: Path, release: str) -> Dict[str, Any]:
    if not (release_dir / release / "pysyncobj").is_dir():
        raise SystemExit(f"bench_time_to_find: no pysyncobj {release} in {release_dir / release} (--release-dir)")
    env = dict(os.environ, PYTHONPATH=_pythonpath(release_dir, release))
    out = subprocess.run([sys.executable, __file__, "--probe"], env=env, cwd=str(ROOT), capture_output=True,
                         text=True, check=True).stdout
    found = json.loads(out)
    if found["version"] != release:
        raise SystemExit(f"bench_time_to_find: {release_dir / release} holds pysyncobj {found['version']}, "
                         f"not {release}")
    missing = [name for name, ok in found["fixes"].items() if not ok]
    if missing:  # --known-fixes, which the rows use, refuses to run then
        raise SystemExit(f"bench_time_to_find: the fixes {missing} do not apply to pysyncobj {release}")
    return found


def rows_for(release: str, probe: Dict[str, Any], bugs: Sequence[str], control: bool,
             also_ledger: bool, without: Sequence[str] = (), ledger_ids: Optional[Sequence[int]] = None) -> List[Row]:
    """The rows of one release.  ``without``: fixes left out of every row's --known-fixes set, control
    included (a fix can mask an injected bug: its control must then run without it too); ``ledger_ids``:
    only these ledger bugs' rows (None: every one the release has)."""
    fixes = tuple(f for f in probe["fixes"] if f not in without)
    base = dict(inject=fixes, known_fixes=False) if without else {}
    rows = [Row(CONTROL, release, **base)] if control else []
    rows += [Row(bug, release, inject=base.get("inject", ()) + (bug,), known_fixes=not without,
                 na="" if probe["bugs"][bug] else "patch does not apply")
             for bug in bugs]
    if also_ledger:
        version = tuple(int(p) for p in release.split("."))
        rows += [_ledger_row(b, release, probe["fixes"]) for b in sorted(LEDGER.values(), key=lambda b: b.id)
                 if b.affects(version) and b.reachable_on("fifo") and not b.storage
                 and (ledger_ids is None or b.id in ledger_ids)]
    return rows


def _ledger_row(b: Bug, release: str, fixes: Sequence[str]) -> Row:
    """Every fix of the release but ``b``'s own: a find there is ``b`` when triage names it."""
    name = f"finding {b.id}"
    if b.fix is None:
        return Row(name, release, ledger_id=b.id, na=f"no in-process fix: triage cannot name it; see {CONTROL}")
    return Row(name, release, inject=tuple(f for f in fixes if f != b.fix), known_fixes=False, ledger_id=b.id)


def seeds_for(seed: int, row: Row, n: int) -> List[int]:
    rng = random.Random(f"{seed}/{row.release}/{row.bug}")
    return [rng.randrange(2 ** 31) for _ in range(n)]


# --- one campaign -------------------------------------------------------------------------------------
def _counterexample(directory: str) -> Dict[str, Any]:
    try:
        with open(os.path.join(directory, "counterexample.json")) as f:
            doc = json.load(f)
    except (OSError, ValueError):  # a failure outside the machine's steps (a fixture, a patch that broke)
        return {"invariants": [], "steps": None, "complete": False, "recorded": False}
    minimized = doc.get("minimized") or {}
    return {"invariants": sorted({str(v.get("invariant")) for v in doc.get("violations") or ()}),
            "steps": minimized.get("minimized"), "complete": bool(minimized.get("complete")), "recorded": True}


def _examples_to_failure(stats_dir: str) -> Dict[str, int]:
    """Report directory name of each shard that failed -> the examples it ran up to its first failing one
    (counted from the per-example statistics, which a worker appends in order): unlike seconds, this
    does not depend on how busy the machine was."""
    ran: "collections.Counter[str]" = collections.Counter()
    first: Dict[str, int] = {}
    for path in sorted(Path(stats_dir).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            example = json.loads(line)
            shard = report_dir_name(example["test"])
            ran[shard] += 1
            if example["failed"] and shard not in first:
                first[shard] = ran[shard]
    return first


def run_campaign(row: Row, seed: int, budget: float, workers: int, targets: Optional[str],
                 minimize_seconds: Optional[float], release_dir: Path, scratch: str,
                 machine: str = "raft") -> Dict[str, Any]:
    report = tempfile.mkdtemp(prefix="campaign-", dir=scratch)
    cmd = [sys.executable, "-m", "harness", "fuzz", "--properties", CAMPAIGN, "--workers", str(workers),
           "--budget", f"{budget:g}", "--seed", str(seed), "--report", report]
    if minimize_seconds is not None:
        cmd += ["--minimize-seconds", f"{minimize_seconds:g}"]
    if row.known_fixes:
        cmd.append("--known-fixes")
    env = dict(os.environ, PYTHONPATH=_pythonpath(release_dir, row.release))
    env.pop(INJECT_ENV, None)
    env.pop(TARGETS_ENV, None)
    env[CAMPAIGN_MACHINE_ENV] = machine
    if row.inject:
        env[INJECT_ENV] = ",".join(row.inject)
    if targets is not None:
        env[TARGETS_ENV] = targets
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        wall = time.monotonic() - start
        try:
            with open(os.path.join(report, "summary.json")) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            summary = {}
        examples = _examples_to_failure(os.path.join(report, "stats"))
        hits = [dict(label=v.get("label"), first_hit=v.get("first_hit"), summary=v.get("summary"),
                     examples=examples.get(os.path.basename(v["directory"])), **_counterexample(v["directory"]))
                for v in summary.get("violations") or ()]
    finally:
        shutil.rmtree(report, ignore_errors=True)
    wanted = [h for h in hits if row.expects(h["label"]) and h["first_hit"] is not None
              and h["first_hit"] <= budget]
    anything = [h for h in hits if h["first_hit"] is not None and h["first_hit"] <= budget]
    chosen = wanted or anything  # a control has no expected label: any violation is what it reports
    best = min(chosen, key=lambda h: (h["steps"] is None, h["steps"] or 0)) if chosen else None
    first = min(chosen, key=lambda h: h["first_hit"]) if chosen else None
    broken = proc.returncode not in (0, 1) or any(not h["recorded"] for h in hits)
    return {"bug": row.bug, "release": row.release, "seed": seed, "rc": proc.returncode, "wall": round(wall, 1),
            "broken": broken,
            "load": [round(load_before, 2), round(os.getloadavg()[0], 2)], "found": bool(wanted),
            "seconds": first["first_hit"] if first else None,
            "examples_to_find": first["examples"] if first else None,
            "steps": best["steps"] if best else None, "complete": best["complete"] if best else None,
            "hits": hits, "examples": summary.get("examples"), "stop_reason": summary.get("stop_reason"),
            "output_tail": proc.stdout.splitlines()[-12:] if broken else []}


# --- the table ----------------------------------------------------------------------------------------
def summarize(row: Row, runs: Sequence[Dict[str, Any]], budget: float) -> Dict[str, Any]:
    """One row of the table from its campaigns."""
    if row.na:
        return {"bug": row.bug, "release": row.release, "na": row.na}
    control = row.bug == CONTROL
    hit = [r for r in runs if (r["seconds"] is not None if control else r["found"])]
    misses = [math.inf] * (len(runs) - len(hit))
    times = sorted([r["seconds"] for r in hit] + misses)
    examples = sorted([r["examples_to_find"] for r in hit if r["examples_to_find"] is not None] + misses)
    labels: "collections.Counter[str]" = collections.Counter()  # campaigns that saw each label
    invariants: "collections.Counter[str]" = collections.Counter()  # of each campaign's first violation sought
    for r in runs:
        labels.update({str(h["label"]) for h in r["hits"]})
        sought = [h for h in r["hits"] if h["first_hit"] is not None and (control or row.expects(h["label"]))]
        if sought:
            invariants.update(min(sought, key=lambda h: h["first_hit"])["invariants"])
    steps = [r["steps"] for r in hit if r["steps"] is not None]
    return {"bug": row.bug, "release": row.release, "na": "", "campaigns": len(runs), "found": len(hit),
            "median": statistics.median(times) if times else None, "worst": times[-1] if times else None,
            "median_examples": statistics.median(examples) if examples else None,
            "invariants": invariants, "labels": labels,
            "steps": [min(steps), max(steps)] if steps else None,
            "proven_minimal": all(r["complete"] for r in hit if r["steps"] is not None)}


def _time(x: Optional[float], budget: float) -> str:
    if x is None:
        return "-"
    return f">{budget:g}" if math.isinf(x) else f"{x:.1f}"


def _counts(d: "collections.Counter[str]") -> str:
    return ", ".join(f"{k}" + (f" ({v})" if v > 1 else "") for k, v in sorted(d.items())) or "-"


def table(lines: Sequence[Dict[str, Any]], budget: float, green: Dict[str, Optional[bool]]) -> str:
    header = ("bug", "release", "found", "median s", "worst s", "examples", "invariant", "label", "steps")
    body = []
    for s in lines:
        if s["na"]:
            body.append((s["bug"], s["release"], "n/a", "", "", "", s["na"], "", ""))
            continue
        control = s["bug"] == CONTROL
        found = f"{s['found']}/{s['campaigns']}" + (" red" if control and s["found"] else "")
        if not control and green.get(s["release"]) is False:
            found += " *"
        steps = "-" if not s["steps"] else (f"{s['steps'][0]}" if s["steps"][0] == s["steps"][1]
                                            else f"{s['steps'][0]}-{s['steps'][1]}")
        if s["steps"] and not s["proven_minimal"]:
            steps += "+"
        examples = s["median_examples"]
        examples = "-" if examples is None else "miss" if math.isinf(examples) else f"{examples:g}"
        body.append((s["bug"], s["release"], found, _time(s["median"], budget), _time(s["worst"], budget),
                     examples, _counts(s["invariants"]), _counts(s["labels"]), steps))
    widths = [max(len(r[i]) for r in body + [header]) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + body]
    out.insert(1, "-" * len(out[0]))
    notes = [r for r, g in green.items() if g is False]
    if notes:
        out.append(f"* the control row of {', '.join(notes)} was not green: those finds are not attributable "
                   f"to the injected bug alone")
    out.append(f"(found: campaigns with the expected label within {budget:g} s; control: campaigns with any "
               f"violation; examples: median examples the finding shard ran up to its first failure; steps: "
               f"minimised length, smallest-largest, '+' not proven 1-minimal)")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bugs", help=f"comma-separated injected bugs, or 'none' "
                                       f"(default all: {', '.join(INJECTED_BUGS)})")
    parser.add_argument("--releases", help=f"comma-separated releases (default all: {', '.join(RELEASES)})")
    parser.add_argument("--release-dir", default="/work/releases", type=Path,
                        help="one unpacked pysyncobj per release: DIR/<version>/pysyncobj (default /work/releases)")
    parser.add_argument("--campaigns", type=int, default=5, help="campaigns per row (default 5)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per campaign (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers per campaign (default 2)")
    parser.add_argument("--jobs", type=int, default=1, help="campaigns run at once (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the campaigns' seeds (default 0)")
    parser.add_argument("--targets", help="guidance measures for the campaigns (harness.fuzz.guidance: names, "
                                          "'all' or 'none'; default: the machine's)")
    parser.add_argument("--minimize-seconds", type=float,
                        help="the campaigns' bound per counterexample for the minimiser (default: the CLI's); the "
                             "CLI also minimises the counterexamples of shards stopped while shrinking")
    parser.add_argument("--also-ledger", action="store_true", help="also rows for the ledger bugs of each release")
    parser.add_argument("--ledger", metavar="IDS",
                        help="with --also-ledger: only these ledger bugs (comma-separated ids, e.g. 6,22)")
    parser.add_argument("--without-fix", action="append", default=[], metavar="FIX",
                        help="leave this known fix out of every row, the control's included (repeatable)")
    parser.add_argument("--no-control", action="store_true",
                        help="skip the control rows (the table then cannot say whether a find is attributable)")
    parser.add_argument("--machine", choices=("raft", "nemesis"), default="raft",
                        help="the campaigns' rules: RaftMachine's (default) or NemesisRules' (per-link faults, "
                             "pauses, skew, transfers, client variety)")
    parser.add_argument("--json", help="write every campaign and row to this file")
    a = parser.parse_args(argv)
    if a.probe:
        print(json.dumps(probe_here()))
        return 0
    bugs = [] if a.bugs == "none" else [b for b in (a.bugs or ",".join(INJECTED_BUGS)).split(",") if b]
    unknown = [b for b in bugs if b not in INJECTED_BUGS]
    releases = [r for r in (a.releases or ",".join(RELEASES)).split(",") if r]
    if unknown or any(r not in RELEASES for r in releases) or a.campaigns < 1 or a.budget <= 0 or a.jobs < 1:
        parser.error(f"unknown bugs {unknown}" if unknown else "bad --releases, --campaigns, --budget or --jobs")
    if any(f not in KNOWN_FIXES for f in a.without_fix) or (a.without_fix and a.also_ledger):
        parser.error(f"--without-fix takes names of {', '.join(KNOWN_FIXES)}, and not with --also-ledger")
    ledger_ids = None
    if a.ledger is not None:
        try:
            ledger_ids = [int(i) for i in a.ledger.split(",")]
        except ValueError:
            ledger_ids = []
        if not a.also_ledger or not ledger_ids or any(i not in LEDGER for i in ledger_ids):
            parser.error(f"--ledger takes ledger ids among {min(LEDGER)}-{max(LEDGER)}, with --also-ledger")
    if a.targets is not None:
        try:
            parse_targets(a.targets)
        except ValueError as e:
            parser.error(str(e))

    rows: List[Row] = []
    for release in releases:
        rows += rows_for(release, probe_release(a.release_dir, release), bugs, not a.no_control, a.also_ledger,
                         a.without_fix, ledger_ids)
    seeds = {row: seeds_for(a.seed, row, a.campaigns) for row in rows if not row.na}
    plan = [(row, seeds[row][i]) for i in range(a.campaigns) for row in seeds]  # interleaved: load hits all rows
    print(f"bench_time_to_find: {len(plan)} campaigns of {a.budget:g} s, {a.workers} workers each, {a.jobs} at a "
          f"time; seed {a.seed}; machine {a.machine}; guidance "
          f"{a.targets if a.targets is not None else 'machine default'}; "
          f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    runs: Dict[Row, List[Dict[str, Any]]] = {row: [] for row in rows}
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="raft-harness-bench-")
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
            futures = {pool.submit(run_campaign, row, seed, a.budget, a.workers, a.targets, a.minimize_seconds,
                                   a.release_dir, scratch, a.machine): row for row, seed in plan}
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                r = future.result()
                runs[futures[future]].append(r)
                what = ("found" if r["found"] else "violation" if r["seconds"] is not None else "nothing") + \
                       (f" at {r['seconds']:.1f} s" if r["seconds"] is not None else "")
                labels = sorted({str(h["label"]) for h in r["hits"]})
                print(f"[{done}/{len(plan)}] {r['bug']} {r['release']} seed {r['seed']}: {what} "
                      f"{labels or ''} examples {r['examples_to_find']} steps {r['steps']} "
                      f"(campaign {r['wall']:.0f} s, rc {r['rc']}, "
                      f"load {r['load'][0]:.1f}-{r['load'][1]:.1f})", flush=True)
                if r["broken"]:  # the campaign itself broke (no counterexample to show): others would too
                    for other in futures:
                        other.cancel()
                    print("\n".join(["the campaign broke; the end of its output:"] + r["output_tail"]))
                    return 3
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines = [summarize(row, runs[row], a.budget) for row in rows]
    green = {release: (None if a.no_control else
                       not any(s["found"] for s in lines if s["bug"] == CONTROL and s["release"] == release))
             for release in releases}
    loads = [x for rs in runs.values() for r in rs for x in r["load"]]
    print()
    print(table(lines, a.budget, green))
    if loads:
        print(f"load average over the campaigns: mean {statistics.mean(loads):.2f}, max {max(loads):.2f} "
              f"({os.cpu_count()} cpus); {time.monotonic() - started:.0f} s in all")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                       "rows": lines, "campaigns": [r for rs in runs.values() for r in rs],
                       "loads": loads}, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
