"""``raft-harness fuzz``: run the properties over pytest-xdist for a wall-clock budget, with live progress.

pytest runs in its own process group so a budget, a first violation or Ctrl-C stops every worker; the
workers report per-example statistics (:mod:`harness.fuzz.stats`) and leave one directory per failing
test (:mod:`harness.fuzz.workers`), which this module tails for the progress line and the summary.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from harness.cli.bugs import bug_table, name_reports
from harness.cli.common import (EXIT_BROKEN, EXIT_OK, EXIT_VIOLATION, PROG, UsageError,
                                format_duration, parse_duration, project_root)
from harness.environment import (CAMPAIGN_SEED_ENV, DATABASE_ENV, NODE_DIR_ENV, NODES_ENV, REPORT_BASE_ENV,
                                 REPORT_ENV, STATS_ENV)
from harness.fuzz import profiles
from harness.fuzz.stats import Statistics, parse_node_range
from harness.report import counterexample, html
from harness.util import owned_dir


def _workers(text: str):
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"--workers must be a positive integer or 'auto', got {text!r}") from None
    if n < 1:
        raise UsageError(f"--workers must be at least 1, got {n}")
    return n


def _seed(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"--seed must be a non-negative integer, got {text!r}") from None
    if n < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {n}")
    return n


def check_database(where: str) -> str:
    """Validate ``--database``: a reachable Redis URL or a usable directory.  Returns the value to export."""
    if where.startswith("redis://") or where.startswith("rediss://"):
        try:
            import redis
        except ImportError:
            raise UsageError("--database redis://... needs the 'redis' package (pip install redis)") from None
        try:
            client = redis.Redis.from_url(where, socket_connect_timeout=3, socket_timeout=3)
            client.ping()
        except ValueError as e:
            raise UsageError(f"--database: bad Redis URL {where!r} ({e})") from None
        except Exception as e:  # redis.ConnectionError, TimeoutError, auth errors...
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UsageError(f"--database: cannot reach Redis at {where} ({reason})") from None
        finally:
            with contextlib.suppress(Exception):
                client.close()
        return where
    if "://" in where:
        raise UsageError(f"--database must be a directory or redis://HOST:PORT/DB, got {where!r}")
    path = os.path.abspath(where)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--database: {where} exists and is not a directory")
    return path


@dataclasses.dataclass
class Found:
    """One failing test of the campaign: its directory and what is in it so far."""

    directory: str
    has_json: bool
    finished: bool  # pytest reported the test as failed (shrinking is over)

    @property
    def name(self) -> str:
        return os.path.basename(self.directory)


def scan_reports(report_dir: str) -> List[Found]:
    found = []
    try:
        entries = sorted(os.listdir(report_dir))
    except FileNotFoundError:
        return found
    for name in entries:
        d = os.path.join(report_dir, name)
        if not os.path.isdir(d) or name == "stats":
            continue
        has_json = os.path.isfile(os.path.join(d, counterexample.REPORT_JSON))
        finished = os.path.isfile(os.path.join(d, "outcome.json"))
        if has_json or finished:
            found.append(Found(d, has_json, finished))
    return found


class Progress:
    """A live line on a terminal (rewritten in place), plain lines every ``interval`` seconds otherwise."""

    def __init__(self, stream, budget: float, tty: Optional[bool] = None) -> None:
        self.stream = stream
        self.budget = budget
        self.tty = stream.isatty() if tty is None else tty
        self.interval = 0.5 if self.tty else max(5.0, min(60.0, budget / 20))
        self._last = -1e9
        self._width = 0

    def line(self, elapsed: float, st: Statistics, found: Sequence[Found]) -> str:
        rate = st.steps / elapsed if elapsed > 0 else 0.0
        faults = st.faults
        shrinking = sum(1 for f in found if not f.finished)
        v = f"violations {len(found)}" + (f" ({shrinking} shrinking)" if shrinking else "")
        return (f"[{format_duration(elapsed):>6}/{format_duration(self.budget)}] examples {st.examples:,} | "
                f"steps {st.steps:,} ({rate:,.0f}/s) | faults {sum(faults.values()):,} of {len(faults)} "
                f"kind{'' if len(faults) == 1 else 's'} | "
                f"elections {st.elections:,} | max term {st.max_term} | {v}")

    def update(self, elapsed: float, st: Statistics, found: Sequence[Found], force: bool = False) -> None:
        if not force and elapsed - self._last < self.interval:
            return
        self._last = elapsed
        text = self.line(elapsed, st, found)
        if self.tty:
            text = text[:max(20, shutil.get_terminal_size().columns - 1)]  # a wrapped line cannot be rewritten
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def say(self, text: str) -> None:
        self.done()
        self.stream.write(text + "\n")
        self.stream.flush()


# --- fuzz ------------------------------------------------------------------------------------------
def _kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop pytest and its xdist workers: SIGTERM to the process group, SIGKILL if they linger."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; workers of the same group may still be exiting
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _summary_table(st: Statistics, found: Sequence[Found], elapsed: float, budget: float, version: str,
                   network: str) -> str:
    rate = st.steps / elapsed if elapsed > 0 else 0.0
    rows = [
        ("pysyncobj", version),
        ("network", network),
        ("elapsed", f"{format_duration(elapsed)} of a {format_duration(budget)} budget"),
        ("examples", f"{st.examples:,}" + (f" ({st.failing_examples:,} failing, shrinking included)"
                                            if st.failing_examples else "")),
        ("steps", f"{st.steps:,} ({rate:,.1f}/s)"),
        ("cluster sizes", " ".join(f"{k}: {v:,}" for k, v in sorted(st.cluster_sizes.items())) or "-"),
        ("elections", f"{st.elections:,}"),
        ("max term", str(st.max_term)),
        ("snapshots installed", f"{st.snapshots_installed:,}"),
        ("violations", str(len(found))),
    ]
    width = max(len(k) for k, _ in rows)
    out = ["", "summary", "-" * 60] + [f"{k:<{width}}  {v}" for k, v in rows]
    faults = st.faults
    out += ["", f"{'fault':<22} {'injected':>10} {'examples':>10}", "-" * 44]
    if faults:
        out += [f"{k:<22} {v:>10,} {st.examples_with['fault: ' + k]:>10,}" for k, v in faults.items()]
    else:
        out.append("(none recorded)")
    others = {k: v for k, v in sorted(st.events.items()) if not k.startswith("fault: ")}
    if others:
        out += ["", f"{'event':<30} {'count':>10} {'examples':>10}", "-" * 52]
        out += [f"{k:<30} {v:>10,} {st.examples_with[k]:>10,}" for k, v in others.items()]
    if not st.examples:
        out += ["", "no per-example statistics arrived: the machines run did not report to harness.fuzz.stats"]
    return "\n".join(out)


def _violation_text(f: Found) -> str:
    if f.has_json:
        text = counterexample.headline(f.directory)
        if text is not None:
            return text
    with contextlib.suppress(OSError):
        with open(os.path.join(f.directory, "failure.txt")) as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "failed"
    return "failed"


def cmd_fuzz(args: argparse.Namespace) -> int:
    budget = parse_duration(args.budget)
    profiles.register()
    if not profiles.known(args.profile):
        raise UsageError(f"--profile: unknown Hypothesis profile {args.profile!r}; the harness has "
                         f"{', '.join(profiles.PREFIX + n for n in profiles.NAMES)} (or a profile your conftest.py registers)")
    workers = _workers(args.workers)
    nodes = None
    if args.nodes is not None:
        try:
            low, high = parse_node_range(args.nodes)
        except ValueError as e:
            raise UsageError(f"--nodes: {e}") from None
        nodes = f"{low}-{high}"
    seed = _seed(args.seed) if args.seed is not None else None
    database = check_database(args.database) if args.database else None
    root = project_root()
    targets = args.properties or [str(root / "properties")]
    paths = []
    for t in targets:
        file_part, sep, rest = t.partition("::")
        p = os.path.abspath(file_part)
        if not os.path.exists(p):
            raise UsageError(f"--properties: {file_part}: no such file or directory")
        paths.append(p + sep + rest)
    if args.report:
        report_dir = os.path.abspath(args.report)
        if os.path.exists(report_dir) and not os.path.isdir(report_dir):
            raise UsageError(f"--report: {args.report} exists and is not a directory")
        if scan_reports(report_dir):
            raise UsageError(f"--report: {args.report} already holds counterexamples from another run; "
                             f"choose a new directory")
    else:
        base = os.path.abspath(os.path.join("raft-harness-reports", time.strftime("%Y%m%d-%H%M%S")))
        report_dir, n = base, 1
        while os.path.exists(report_dir):
            n += 1
            report_dir = f"{base}-{n}"
    os.makedirs(report_dir, exist_ok=True)
    stats_dir = os.path.join(report_dir, "stats")
    os.makedirs(stats_dir, exist_ok=True)

    from harness.adapter.observe import VERSION
    import hypothesis

    out = sys.stdout
    out.write(f"{PROG} fuzz: pysyncobj {VERSION} (hypothesis {hypothesis.__version__}, python "
              f"{sys.version.split()[0]})\n")
    out.write(f"  network {args.network}, workers {workers}, cluster sizes {nodes or 'default'}, budget "
              f"{format_duration(budget)}, seed {seed if seed is not None else 'random'}, "
              f"{'keep going' if args.keep_going else 'stop at the first violation'}"
              f"{', known fixes installed' if args.known_fixes else ''}\n")
    db_text = database or os.environ.get(DATABASE_ENV) or str(root / ".hypothesis" / "examples")
    out.write(f"  example database {db_text}\n  reports in {report_dir}\n")
    out.flush()

    # One worker runs in the pytest process itself: xdist would only add seconds of start-up.
    xdist = [] if workers == 1 else ["-n", str(workers)]
    cmd = [sys.executable, "-m", "pytest", *paths, *xdist, "-p", "no:logging", "-p", "no:cacheprovider",
           "-p", "harness.fuzz.workers", f"--hypothesis-profile={args.profile}", f"--raft-network={args.network}",
           "-q", "-rfE", "--color=no", "--raft-triage-seconds=0"]  # the campaign names its bugs at the end
    if args.known_fixes:
        cmd.append("--raft-known-fixes")
        from harness.fuzz.selection import known_fixes_apply_to

        outside = [p for p in paths if not known_fixes_apply_to(Path(p.partition("::")[0]), root)]
        if outside:
            out.write(f"  note: --known-fixes patches only tests under a properties/ directory, not "
                      f"{', '.join(outside)}\n")
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd.append("--timeout=0")  # setup.cfg's per-test timeout is for the test suite, not for campaigns
    if not args.keep_going:
        cmd.append("-x")
    # The workers' temporary files and cluster directories (NODE_DIR_ENV, read by harness.sim.cluster)
    # live in one scratch directory, removed at the end even though killed workers cannot clean up; it is
    # named after this process, so if the campaign itself is killed the next harness process reaps it.
    shm = "/dev/shm"
    scratch = str(owned_dir(shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None))
    env = dict(os.environ)
    env.pop(REPORT_ENV, None)
    env.pop(CAMPAIGN_SEED_ENV, None)
    env.update({REPORT_BASE_ENV: report_dir, STATS_ENV: stats_dir, "PYTHONUNBUFFERED": "1",
                "TMPDIR": scratch, NODE_DIR_ENV: scratch})
    if database:
        env[DATABASE_ENV] = database
    if nodes:
        env[NODES_ENV] = nodes
    else:
        env.pop(NODES_ENV, None)
    if seed is not None:
        env[CAMPAIGN_SEED_ENV] = str(seed)

    stats = Statistics(stats_dir)
    progress = Progress(out, budget)
    log_path = os.path.join(report_dir, "pytest.log")
    start = time.monotonic()
    deadline = start + budget
    shrink_grace = min(120.0, max(15.0, budget * 0.25))
    broken: Optional[str] = None
    stop_reason = "budget spent"
    rounds = 0
    first_seen: Dict[str, float] = {}
    interrupted = False
    try:
        with open(log_path, "ab") as log:
            while True:
                rounds += 1
                examples_before = stats.examples
                log.write(f"\n==== round {rounds}: {' '.join(cmd)}\n".encode())
                log.flush()
                proc = subprocess.Popen(cmd, cwd=str(root), env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
                hard_deadline = deadline
                try:
                    while proc.poll() is None:
                        time.sleep(0.2)
                        stats.refresh()
                        found = scan_reports(report_dir)
                        now = time.monotonic()
                        for f in found:
                            first_seen.setdefault(f.directory, now - start)
                        progress.update(now - start, stats, found)
                        if not args.keep_going and any(f.finished for f in found):
                            stop_reason = "violation found"
                            break
                        if now >= hard_deadline:
                            if hard_deadline == deadline and any(not f.finished for f in found):
                                hard_deadline = deadline + shrink_grace
                                progress.say(f"budget spent while a counterexample is shrinking: waiting up to "
                                             f"{format_duration(shrink_grace)} more for the shrinker")
                                continue
                            stop_reason = "budget spent"
                            break
                except KeyboardInterrupt:
                    interrupted = True
                    stop_reason = "interrupted"
                finally:
                    if proc.poll() is None:
                        _kill_group(proc)
                    else:  # the leader exited by itself; make sure no worker outlives it
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.returncode
                stats.refresh()
                if interrupted or stop_reason == "violation found" or time.monotonic() >= deadline:
                    break
                if rc == 5:
                    broken = "pytest collected no tests"
                    break
                if rc not in (0, 1):
                    broken = f"pytest exited with status {rc}"
                    break
                if rc == 1:  # failures: reported below; with --keep-going every test has run to its end
                    stop_reason = "every test ran to its end" if args.keep_going else "violation found"
                    if not scan_reports(report_dir):
                        broken = "pytest reported failures, but no failing test left a report"
                    break
                if seed is not None:
                    stop_reason = "every example of the seeded run ran"
                    break
                if profiles.deterministic(args.profile) or stats.examples == examples_before:
                    stop_reason = f"every example of the {args.profile} profile ran"
                    break
                # every example ran within the budget: another round, with fresh randomness
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.monotonic() - start
    stats.refresh()
    found = scan_reports(report_dir)
    progress.update(elapsed, stats, found, force=True)
    progress.done()
    out.write(f"stopped: {stop_reason} after {format_duration(elapsed)} ({rounds} pytest run"
              f"{'s' if rounds != 1 else ''}; output in {log_path})\n")
    hits = []
    if found and not interrupted and (args.triage_seconds > 0 or args.minimize_seconds > 0):
        out.write(f"naming {len(found)} counterexample{'s' if len(found) != 1 else ''}: triage (one replay per "
                  f"fix in the ledger), then minimising (bounds {format_duration(args.triage_seconds)} and "
                  f"{format_duration(args.minimize_seconds)} each)\n")
        out.flush()
        hits = name_reports([f.directory for f in found if f.has_json], first_seen, out,
                            args.triage_seconds, args.minimize_seconds)
    for f in found:
        if f.has_json:
            try:
                html.write_html(f.directory)
            except (counterexample.ReportError, OSError) as e:
                out.write(f"warning: could not render {f.directory}/report.html: {e}\n")
    out.write(_summary_table(stats, found, elapsed, budget, VERSION, args.network) + "\n")
    summary = dict(stats.as_dict(), pysyncobj_version=VERSION, network=args.network, budget=budget,
                   elapsed=round(elapsed, 3), stop_reason=stop_reason, rounds=rounds,
                   violations=[dict(directory=f.directory, finished=f.finished, summary=_violation_text(f),
                                    label=next((h.label for h in hits if h.directory == f.directory), None),
                                    # seconds from the campaign's start to the first sight of it
                                    first_hit=round(first_seen[f.directory], 3) if f.directory in first_seen
                                    else None)
                               for f in found])
    with open(os.path.join(report_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1, sort_keys=True)
    if found:
        out.write("\nviolations:\n")
        for f in found:
            out.write(f"  {f.name}: {_violation_text(f)}\n")
            if not f.finished:
                out.write("    (the run ended while it was shrinking: a failing example, maybe not the smallest)\n")
            if f.has_json:
                out.write(f"    report  {os.path.join(f.directory, counterexample.REPORT_HTML)}\n"
                          f"    replay  {PROG} replay {f.directory}\n")
            else:
                out.write(f"    no counterexample.json (not a RaftMachine?): see "
                          f"{os.path.join(f.directory, 'failure.txt')}\n")
        if hits:
            out.write(bug_table(hits) + "\n")
        out.flush()
        return EXIT_VIOLATION
    if broken:
        out.write(f"\nerror: {broken}; last lines of {log_path}:\n")
        with contextlib.suppress(OSError):
            with open(log_path, errors="replace") as fh:
                out.write("".join(fh.readlines()[-25:]))
        out.flush()
        return EXIT_BROKEN
    out.flush()
    return 130 if interrupted else EXIT_OK
