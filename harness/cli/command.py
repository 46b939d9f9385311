"""``raft-harness`` (``python -m harness``): fuzz campaigns, replays and counterexample reports.

``fuzz``    runs the state machines in ``properties/`` over pytest-xdist for a
            wall-clock budget, with a live progress line, and ends with a
            summary of what the run exercised; every violation leaves a
            directory with ``counterexample.json`` and ``report.html``.
``replay``  re-runs a saved counterexample (or a ``@reproduce_failure`` blob)
            twice, confirms it still fails and that both runs took the same
            path, message for message.
``report``  (re)renders ``report.html`` for a saved counterexample.

Exit status: 0 nothing found (``replay``: no longer fails), 1 a violation
(``replay``: it still fails), 2 bad usage (one line on stderr), 3 the run
itself broke (pytest could not run the properties; ``replay``: the two
replays diverged, a harness bug).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from harness.report import html as html_report
from harness.fuzz.workers import REPORT_BASE_ENV, SEED_ENV
from harness.fuzz.stats import NODES_ENV, STATS_ENV, parse_node_range

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 3
PROG = "raft-harness"
#: conftest.py profiles that run the same examples every time: a second round would repeat the first.
_DETERMINISTIC_PROFILES = ("replay", "ci")
_BLOB = re.compile(r"""@?reproduce_failure\(\s*['"]([^'"]+)['"]\s*,\s*b?['"]([A-Za-z0-9+/=\s]+)['"]\s*\)""")


class UsageError(Exception):
    """Bad command line or input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print the usage and exit; we want one line
        raise UsageError(message)


# --- small parsers ----------------------------------------------------------------------------------
_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"20s"``, ``"5m"``, ``"1h30m"``, ``"1.5h"``, ``"90"`` (seconds) -> seconds (> 0)."""
    s = str(text).strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d)?", s)
    rebuilt = "".join(f"{n}{u}" for n, u in parts)
    if not parts or rebuilt != s.replace(" ", "") or (len(parts) > 1 and any(not u for _, u in parts)):
        raise UsageError(f"--budget: cannot parse {text!r} as a duration (e.g. 90s, 5m, 1h30m)")
    seconds = sum(float(n) * _UNITS[u or "s"] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"--budget must be more than zero, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


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


def project_root() -> Path:
    """The source checkout this harness runs from (holds ``properties/`` and ``conftest.py``)."""
    return Path(__file__).resolve().parents[2]


# --- fuzz: statistics ------------------------------------------------------------------------------
class Statistics:
    """Aggregates the JSON lines the workers append (see :mod:`harness.fuzz.stats`), read incrementally."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._offsets: Dict[str, int] = {}
        self.examples = 0
        self.failing_examples = 0
        self.steps = 0
        self.elections = 0
        self.snapshots_installed = 0
        self.max_term = 0
        self.events: "collections.Counter[str]" = collections.Counter()
        self.examples_with: "collections.Counter[str]" = collections.Counter()
        self.cluster_sizes: "collections.Counter[int]" = collections.Counter()

    def refresh(self) -> None:
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(".jsonl"))
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(self.directory, name)
            offset = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # only whole lines; a line being written is read next time
            self._offsets[path] = offset + end
            for line in data[:end].splitlines():
                with contextlib.suppress(ValueError):
                    self.add(json.loads(line))

    def add(self, ex: Dict[str, Any]) -> None:
        self.examples += 1
        self.failing_examples += bool(ex.get("failed"))
        self.steps += int(ex.get("steps") or 0)
        self.elections += int(ex.get("elections") or 0)
        self.snapshots_installed += int(ex.get("snapshots_installed") or 0)
        self.max_term = max(self.max_term, int(ex.get("max_term") or 0))
        if ex.get("nodes"):
            self.cluster_sizes[int(ex["nodes"])] += 1
        for what, n in (ex.get("events") or {}).items():
            if what.startswith("cluster size"):
                continue
            self.events[what] += int(n)
            self.examples_with[what] += 1

    @property
    def faults(self) -> Dict[str, int]:
        return {k[len("fault: "):]: v for k, v in sorted(self.events.items()) if k.startswith("fault: ")}

    def as_dict(self) -> Dict[str, Any]:
        return {
            "examples": self.examples, "failing_examples": self.failing_examples, "steps": self.steps,
            "elections": self.elections, "max_term": self.max_term,
            "snapshots_installed": self.snapshots_installed, "faults": self.faults,
            "events": dict(sorted(self.events.items())),
            "examples_with": dict(sorted(self.examples_with.items())),
            "cluster_sizes": {str(k): v for k, v in sorted(self.cluster_sizes.items())},
        }


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
        has_json = os.path.isfile(os.path.join(d, html_report.REPORT_JSON))
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
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(f.directory, html_report.REPORT_JSON)) as fh:
                doc = json.load(fh)
            return f"{doc.get('error')}: {doc.get('message')}"
    with contextlib.suppress(OSError):
        with open(os.path.join(f.directory, "failure.txt")) as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "failed"
    return "failed"


def cmd_fuzz(args: argparse.Namespace) -> int:
    budget = parse_duration(args.budget)
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
    db_text = database or os.environ.get("RAFT_HARNESS_DB") or str(root / ".hypothesis" / "examples")
    out.write(f"  example database {db_text}\n  reports in {report_dir}\n")
    out.flush()

    # One worker runs in the pytest process itself: xdist would only add seconds of start-up.
    xdist = [] if workers == 1 else ["-n", str(workers)]
    cmd = [sys.executable, "-m", "pytest", *paths, *xdist, "-p", "no:logging", "-p", "no:cacheprovider",
           "-p", "harness.fuzz.workers", f"--hypothesis-profile={args.profile}", f"--network={args.network}",
           "-q", "-rfE", "--color=no"]
    if args.known_fixes:
        cmd.append("--known-fixes")
        from harness.fuzz.selection import known_fixes_apply_to

        outside = [p for p in paths if not known_fixes_apply_to(Path(p.partition("::")[0]), root)]
        if outside:
            out.write(f"  note: --known-fixes patches only tests under a properties/ directory, not "
                      f"{', '.join(outside)}\n")
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd.append("--timeout=0")  # setup.cfg's per-test timeout is for the test suite, not for campaigns
    if not args.keep_going:
        cmd.append("-x")
    # The workers' temporary files and cluster directories (RAFT_HARNESS_TMP, read by harness.sim.cluster)
    # live in one scratch directory, removed at the end even though killed workers cannot clean up.
    shm = "/dev/shm"
    scratch = tempfile.mkdtemp(prefix="raft-harness-fuzz-",
                               dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None)
    env = dict(os.environ)
    env.pop("RAFT_HARNESS_REPORT", None)
    env.pop(SEED_ENV, None)
    env.update({REPORT_BASE_ENV: report_dir, STATS_ENV: stats_dir, "PYTHONUNBUFFERED": "1",
                "TMPDIR": scratch, "RAFT_HARNESS_TMP": scratch})
    if database:
        env["RAFT_HARNESS_DB"] = database
    if nodes:
        env[NODES_ENV] = nodes
    else:
        env.pop(NODES_ENV, None)
    if seed is not None:
        env[SEED_ENV] = str(seed)

    stats = Statistics(stats_dir)
    progress = Progress(out, budget)
    log_path = os.path.join(report_dir, "pytest.log")
    start = time.monotonic()
    deadline = start + budget
    shrink_grace = min(120.0, max(15.0, budget * 0.25))
    broken: Optional[str] = None
    stop_reason = "budget spent"
    rounds = 0
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
                if args.profile in _DETERMINISTIC_PROFILES or stats.examples == examples_before:
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
    for f in found:
        if f.has_json:
            try:
                html_report.write_html(f.directory)
            except (html_report.ReportError, OSError) as e:
                out.write(f"warning: could not render {f.directory}/report.html: {e}\n")
    out.write(_summary_table(stats, found, elapsed, budget, VERSION, args.network) + "\n")
    summary = dict(stats.as_dict(), pysyncobj_version=VERSION, network=args.network, budget=budget,
                   elapsed=round(elapsed, 3), stop_reason=stop_reason, rounds=rounds,
                   violations=[dict(directory=f.directory, finished=f.finished, summary=_violation_text(f))
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
                out.write(f"    report  {os.path.join(f.directory, html_report.REPORT_HTML)}\n"
                          f"    replay  {PROG} replay {f.directory}\n")
            else:
                out.write(f"    no counterexample.json (not a RaftMachine?): see "
                          f"{os.path.join(f.directory, 'failure.txt')}\n")
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


# --- replay ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class ReplayRun:
    error: Optional[BaseException]
    digests: List[Optional[str]]
    rules: List[str]

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def headline(self) -> str:
        if self.error is None:
            return "passed"
        first = str(self.error).strip().splitlines()
        return f"{type(self.error).__name__}: {first[0] if first else ''}"

    @property
    def invariants(self) -> List[str]:
        return sorted({v.invariant for v in getattr(self.error, "violations", ())}) or (
            [type(self.error).__name__] if self.error is not None else [])


@contextlib.contextmanager
def _recording_env() -> Iterator[str]:
    """``RAFT_HARNESS_REPORT`` at a scratch directory: the machine records digests per step."""
    old = os.environ.get("RAFT_HARNESS_REPORT")
    directory = tempfile.mkdtemp(prefix="raft-harness-replay-")
    os.environ["RAFT_HARNESS_REPORT"] = directory
    try:
        yield directory
    finally:
        if old is None:
            os.environ.pop("RAFT_HARNESS_REPORT", None)
        else:
            os.environ["RAFT_HARNESS_REPORT"] = old
        shutil.rmtree(directory, ignore_errors=True)


def _search_path() -> List[str]:
    root = project_root()
    return [os.getcwd(), str(root), str(root / "tests"), str(root / "properties")]


@contextlib.contextmanager
def _importable() -> Iterator[None]:
    added = [p for p in _search_path() if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)


def import_machine(name: str):
    """The class ``module.Qual.Name`` (a RuleBasedStateMachine), or None if it cannot be imported."""
    from hypothesis.stateful import RuleBasedStateMachine

    parts = name.split(".")
    if "<locals>" in parts:
        return None
    with _importable():
        for i in range(len(parts) - 1, 0, -1):
            module_name = ".".join(parts[:i])
            try:
                obj = importlib.import_module(module_name)
            except Exception:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                continue
            if inspect.isclass(obj) and issubclass(obj, RuleBasedStateMachine):
                return obj
    return None


def fallback_machine(network: str):
    from harness.fuzz.machine import RaftMachine, UnreliableNetworkRules

    base = UnreliableNetworkRules if network == "unreliable" else RaftMachine
    if base.network == network:
        return base
    return type(f"Replayed{base.__name__}", (base,), {"network": network, "__module__": __name__})


def _rule_args(args: Dict[str, Any]) -> Dict[str, Any]:
    # Rule arguments are plain values; frozensets (partition sides) are stored as sorted lists.
    return {k: frozenset(v) if isinstance(v, list) else v for k, v in args.items()}


def _initialize_rule_names(cls) -> set:
    from hypothesis.stateful import INITIALIZE_RULE_MARKER

    return {name for name, value in inspect.getmembers(cls) if getattr(value, INITIALIZE_RULE_MARKER, None)}


def _check_invariants(machine, init_pending: set) -> None:
    for inv in getattr(machine, "invariants", ()):
        if init_pending and not inv.check_during_init:
            continue
        if all(p(machine) for p in inv.preconditions):
            inv.function(machine)


def run_recorded(cls, steps: Sequence[Dict[str, Any]]) -> ReplayRun:
    """Run recorded steps on a fresh ``cls()`` as Hypothesis would: invariants after each step, then teardown."""
    with _recording_env():
        machine = cls()
        pending = _initialize_rule_names(cls)
        error: Optional[BaseException] = None
        try:
            for step in steps:
                rule = step["rule"]
                if rule == "teardown":
                    continue
                fn = getattr(machine, rule, None)
                if not callable(fn):
                    raise UsageError(f"{cls.__module__}.{cls.__qualname__} has no rule {rule!r}; "
                                     f"the report was recorded with another machine (try --machine)")
                args = _rule_args(step.get("args") or {})
                try:
                    inspect.signature(fn).bind(**args)
                except TypeError as e:
                    raise UsageError(f"{cls.__qualname__}.{rule} does not take the recorded arguments {sorted(args)} "
                                     f"({e}); the report was recorded with another machine (try --machine)") from None
                fn(**args)
                pending.discard(rule)
                _check_invariants(machine, pending)
        except UsageError:
            with contextlib.suppress(Exception):
                machine.teardown()
            raise
        except Exception as e:
            error = e
        try:
            machine.teardown()
        except Exception as e:
            if error is None:
                error = e
        recorder = getattr(machine, "recorder", None)
        steps_done = list(getattr(recorder, "steps", ()))
        return ReplayRun(error, [s.digest for s in steps_done], [s.rule for s in steps_done])


def first_divergence(a: Sequence[Optional[str]], b: Sequence[Optional[str]]) -> Optional[int]:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _describe_step(rules: Sequence[str], i: int, codes: Optional[Sequence[str]] = None) -> str:
    if codes and i < len(codes):
        return f"step {i} ({codes[i]})"
    if i < len(rules):
        return f"step {i} ({rules[i]})"
    return f"step {i} (one run has no such step)"


def _compare_runs(first: ReplayRun, second: ReplayRun, codes: Optional[Sequence[str]], out) -> bool:
    """Report whether two replays took the same path; False (and the first divergent step) if not."""
    at = first_divergence(first.digests, second.digests)
    if at is not None or first.headline != second.headline:
        out.write("NONDETERMINISTIC: the two replays diverged")
        if at is not None:
            out.write(f" at {_describe_step(first.rules, at, codes)}: trace digest {first.digests[at] if at < len(first.digests) else None} "
                      f"vs {second.digests[at] if at < len(second.digests) else None}")
        out.write(f"\n  run 1: {first.headline}\n  run 2: {second.headline}\n"
                  "  this is a harness bug (same steps and seed must deliver the same messages at the same "
                  "virtual times): please report it with this counterexample\n")
        return False
    out.write(f"both replays took the same path: {len(first.digests)} steps, final trace digest "
              f"{(first.digests[-1] or '')[:16] if first.digests else '-'}\n")
    return True


def replay_report(path: str, machine_name: Optional[str], out) -> int:
    try:
        doc, json_path = html_report.load_report(path)
    except html_report.ReportError as e:
        raise UsageError(str(e)) from None
    from harness.adapter.observe import VERSION

    name = machine_name or doc.get("machine") or ""
    cls = import_machine(name) if name else None
    if cls is None:
        if machine_name:
            raise UsageError(f"--machine: cannot import a state machine class named {machine_name!r}")
        cls = fallback_machine(str(doc.get("network") or "fifo"))
        out.write(f"note: cannot import {name!r}; replaying on {cls.__module__}.{cls.__qualname__} "
                  f"(network {cls.network})\n")
    steps = doc["steps"]
    codes = [html_report.step_code(s) for s in steps]
    recorded_on = doc.get("pysyncobj_version")
    patches = [str(p) for p in doc.get("patches") or ()]
    out.write(f"replaying {json_path}: {len(steps)} steps on {cls.__module__}.{cls.__qualname__}, network "
              f"{doc.get('network')}, seed {doc.get('seed')}; recorded on pysyncobj {recorded_on}, "
              f"replaying on {VERSION}\n")
    if patches:
        out.write(f"recorded with patches {', '.join(patches)} installed: replaying with them\n")
    out.flush()
    with patched(patches):
        first = run_recorded(cls, steps)
        second = run_recorded(cls, steps)
    if not _compare_runs(first, second, codes, out):
        return EXIT_BROKEN
    recorded = [s.get("digest") for s in steps]
    if recorded_on == VERSION and any(recorded):
        at = first_divergence(recorded, first.digests)
        if at is None:
            out.write("the replays match the recording step for step\n")
        else:
            out.write(f"note: the replays diverge from the recording at {_describe_step(first.rules, at, codes)}: "
                      f"the machine, the harness or pysyncobj changed since it was recorded\n")
    elif recorded_on != VERSION:
        out.write(f"note: recorded on pysyncobj {recorded_on}, replayed on {VERSION}: trace digests are not "
                  f"compared with the recording\n")
    return _verdict(first, sorted({str(v.get("invariant")) for v in doc.get("violations") or ()}), out)


@contextlib.contextmanager
def patched(patches: Sequence[str]) -> Iterator[None]:
    """Install the named harness.adapter.patching patches (a recording's, or the known fixes) for a replay."""
    from harness.adapter import patching

    with contextlib.ExitStack() as stack:
        if patches:
            try:
                stack.enter_context(patching.inject(*patches))
            except (KeyError, patching.MutationNotApplicable) as e:
                raise UsageError(f"cannot install the patches {list(patches)} on this pysyncobj: {e}") from None
        yield


def _verdict(run: ReplayRun, expected: Sequence[str], out) -> int:
    if not run.failed:
        out.write("NO LONGER FAILS: every step and the final checks passed\n")
        return EXIT_OK
    out.write(f"STILL FAILS: {run.headline}\n")
    if expected and not set(run.invariants) & set(expected):
        out.write(f"note: the recording broke {', '.join(expected)}; the replay breaks "
                  f"{', '.join(run.invariants)}\n")
    return EXIT_VIOLATION


def parse_blob(text: str, version: Optional[str]) -> Optional[Tuple[str, bytes]]:
    """(hypothesis version, blob) from ``@reproduce_failure('6.1', b'AX...')`` or a bare blob; None if neither."""
    import hypothesis
    from hypothesis.core import decode_failure
    from hypothesis.errors import InvalidArgument

    m = _BLOB.search(text)
    if m:
        version, blob = version or m.group(1), re.sub(r"\s+", "", m.group(2))
    elif re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", text.strip()) and len(text.strip()) >= 8:
        blob = text.strip()
    else:
        return None
    try:
        decode_failure(blob.encode())
    except (InvalidArgument, ValueError):
        return None
    return version or hypothesis.__version__, blob.encode()


def replay_blob(version: str, blob: bytes, machine_name: Optional[str], network: str, out) -> int:
    import hypothesis
    from hypothesis import HealthCheck, Phase, reproduce_failure, settings
    from hypothesis.errors import DidNotReproduce
    from hypothesis.reporting import with_reporter
    from hypothesis.stateful import run_state_machine_as_test

    if version != hypothesis.__version__:
        raise UsageError(f"the blob was printed by Hypothesis {version}; this is Hypothesis "
                         f"{hypothesis.__version__}, which cannot decode it")
    if machine_name:
        cls = import_machine(machine_name)
        if cls is None:
            raise UsageError(f"--machine: cannot import a state machine class named {machine_name!r}")
    else:
        with _importable():
            try:
                module = importlib.import_module("test_raft")
            except Exception as e:
                raise UsageError(f"cannot import properties/test_raft.py to replay a blob ({e}); "
                                 f"name the machine with --machine") from None
        cls = module.UnreliableRaft if network == "unreliable" else module.FifoRaft
    out.write(f"replaying a @reproduce_failure blob on {cls.__module__}.{cls.__qualname__} (Hypothesis {version})\n")
    out.flush()
    runs, outputs = [], []
    for _ in range(2):
        instances: list = []

        def init(self, _base=cls, _seen=instances):
            _base.__init__(self)
            _seen.append(self)

        capture = type(cls.__name__, (cls,), {"__init__": init, "__module__": cls.__module__,
                                               "__qualname__": cls.__qualname__})
        capture = reproduce_failure(version, blob)(capture)
        lines: List[str] = []
        error: Optional[BaseException] = None
        with _recording_env(), with_reporter(lambda s, _l=lines: _l.append(str(s))):
            try:
                run_state_machine_as_test(capture, settings=settings(
                    database=None, deadline=None, print_blob=False, max_examples=1, stateful_step_count=1000,
                    suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.reuse, Phase.generate]))
            except DidNotReproduce as e:
                if "completed successfully" not in str(e):
                    raise UsageError(f"the blob does not fit {cls.__qualname__}: {str(e).splitlines()[0]}") \
                        from None
            except Exception as e:
                error = e
        machine = instances[-1] if instances else None
        recorder = getattr(machine, "recorder", None)
        steps = list(getattr(recorder, "steps", ()))
        runs.append(ReplayRun(error, [s.digest for s in steps], [s.rule for s in steps]))
        outputs.append(lines)
    if outputs[0]:
        out.write("\n".join(outputs[0]) + "\n")
    codes = [s.code() for s in getattr(getattr(instances[-1], "recorder", None), "steps", ())] if instances else None
    if not _compare_runs(runs[0], runs[1], codes, out):
        return EXIT_BROKEN
    return _verdict(runs[0], [], out)


def cmd_replay(args: argparse.Namespace) -> int:
    target = args.target
    if os.path.exists(target):
        return replay_report(target, args.machine, sys.stdout)
    blob = parse_blob(target, args.hypothesis_version)
    if blob is None:
        raise UsageError(f"{target}: no such report (file or directory), and not a @reproduce_failure blob")
    from harness.adapter.fixes import KNOWN_FIXES

    with patched(list(KNOWN_FIXES) if args.known_fixes else []):
        try:
            return replay_blob(blob[0], blob[1], args.machine, args.network, sys.stdout)
        except UsageError as e:
            if args.known_fixes and "does not fit" in str(e):
                raise UsageError(f"{e} (with --known-fixes the patched run may draw differently from the one "
                                 f"that printed the blob: replay its report directory instead)") from None
            raise


# --- report ----------------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    try:
        path = html_report.write_html(args.report, out=args.output)
    except html_report.ReportError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write the report: {e.strerror}: {e.filename}") from None
    sys.stdout.write(f"{path}\n")
    return EXIT_OK


# --- the parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fuzz pysyncobj clusters, replay and render counterexamples.")
    sub = parser.add_subparsers(dest="command", metavar="{fuzz,replay,report}")

    fz = sub.add_parser("fuzz", help="run the properties over pytest-xdist for a wall-clock budget",
                        description="Run the state machines in properties/ over pytest-xdist for a wall-clock "
                                    "budget. Exit status: 0 nothing found, 1 violation found, 2 bad usage.")
    fz.add_argument("--budget", required=True, help="wall-clock budget: 90s, 5m, 1h30m...")
    fz.add_argument("--workers", default="auto", help="xdist workers: a number or 'auto' (default)")
    fz.add_argument("--network", choices=("fifo", "unreliable", "all"), default="fifo",
                    help="channel model of the machines to run (default fifo)")
    fz.add_argument("--nodes", help="initial cluster sizes: N or LOW-HIGH within 1-7 (default 3-5)")
    fz.add_argument("--seed", help="Hypothesis seed (one per shard is derived from it); bypasses the database")
    fz.add_argument("--report", help="directory for counterexamples, statistics and the pytest log "
                                     "(default raft-harness-reports/<timestamp>)")
    fz.add_argument("--keep-going", action="store_true", help="do not stop at the first violation")
    fz.add_argument("--database", help="example database: a directory or redis://HOST:PORT/DB")
    fz.add_argument("--properties", action="append", metavar="PATH",
                    help="pytest path or node id to fuzz instead of properties/ (repeatable)")
    fz.add_argument("--profile", default="fuzz", help="Hypothesis profile from conftest.py (default fuzz)")
    fz.add_argument("--known-fixes", action="store_true",
                    help="fuzz pysyncobj with the fixes for findings already made (harness.adapter.fixes.KNOWN_FIXES), "
                         "to hunt for new bugs")
    fz.set_defaults(func=cmd_fuzz)

    rp = sub.add_parser("replay", help="re-run a counterexample twice and confirm it still fails",
                        description="Re-run a saved counterexample (directory or counterexample.json) or a "
                                    "@reproduce_failure blob twice. Exit status: 0 no longer fails, 1 still "
                                    "fails, 2 bad usage, 3 the two replays diverged (a harness bug).")
    rp.add_argument("target", metavar="REPORT_OR_BLOB")
    rp.add_argument("--machine", help="state machine class (module.Class) instead of the one recorded "
                                      "(for a blob: instead of properties' FifoRaft/UnreliableRaft)")
    rp.add_argument("--network", choices=("fifo", "unreliable"), default="fifo",
                    help="for a blob without --machine: FifoRaft or UnreliableRaft (default fifo)")
    rp.add_argument("--hypothesis-version", help="for a bare blob: the Hypothesis version that printed it")
    rp.add_argument("--known-fixes", action="store_true",
                    help="for a blob: replay with the known fixes installed (a report records its own patches)")
    rp.set_defaults(func=cmd_replay)

    rr = sub.add_parser("report", help="(re)render report.html for a saved counterexample")
    rr.add_argument("report", metavar="REPORT", help="a directory with counterexample.json, or the JSON file")
    rr.add_argument("-o", "--output", help="where to write the HTML (default: report.html beside the JSON)")
    rr.set_defaults(func=cmd_report)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            raise UsageError("choose a command: fuzz, replay or report (see --help)")
        return args.func(args)
    except UsageError as e:
        sys.stdout.flush()
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130


def console_main() -> None:
    sys.exit(main())
