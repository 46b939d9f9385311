"""Per-example statistics for fuzz campaigns, and the campaign settings workers read from the environment.

``raft-harness fuzz`` starts pytest workers with ``RAFT_HARNESS_STATS=DIR``;
every example a :class:`~harness.fuzz.machine.RaftMachine` runs then appends one
JSON line to ``DIR/<worker>-<pid>.jsonl`` (steps, events by kind, elections,
max term, snapshots installed, whether it failed), which the command line
tails for its live progress line and its summary.  Without the variable
nothing is counted or written.

The machine calls :func:`noted` for every Hypothesis event it emits and
:func:`example_done` from its teardown.  ``RAFT_HARNESS_NODES`` (``"3-5"`` or
``"4"``) restricts the cluster sizes the machine's ``start_cluster`` draws:
:func:`node_range` reads it when :mod:`harness.fuzz.machine` is imported, because
Hypothesis strategies are built at import time.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import re
from typing import Any, Dict, Optional, Tuple

from harness.environment import NODES_ENV, STATS_ENV

#: Cluster sizes ``start_cluster`` draws by default.
DEFAULT_NODES = (3, 5)
#: Sizes a machine can start with: node ids n1..n7 (``harness.fuzz.machine.NODE_IDS``).
MIN_NODES, MAX_NODES = 1, 7

_events: "collections.Counter[str]" = collections.Counter()


def parse_node_range(text: str) -> Tuple[int, int]:
    """``"3-5"`` -> (3, 5); ``"4"`` -> (4, 4).  ValueError with a one-line reason otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    if not m:
        raise ValueError(f"cluster size must be N or LOW-HIGH (e.g. 3-5), got {text!r}")
    low = int(m.group(1))
    high = int(m.group(2)) if m.group(2) is not None else low
    if not MIN_NODES <= low <= high <= MAX_NODES:
        raise ValueError(f"cluster size must lie within {MIN_NODES}-{MAX_NODES} with LOW <= HIGH, got {text!r}")
    return low, high


def node_range(default: Tuple[int, int] = DEFAULT_NODES) -> Tuple[int, int]:
    """The cluster sizes to draw: ``RAFT_HARNESS_NODES`` if set, else ``default``."""
    text = os.environ.get(NODES_ENV, "").strip()
    if not text:
        return default
    try:
        return parse_node_range(text)
    except ValueError as e:
        raise ValueError(f"{NODES_ENV}: {e}") from None


def enabled() -> bool:
    return bool(os.environ.get(STATS_ENV))


def noted(what: str) -> None:
    """Count one event of the current example (only while a campaign collects statistics)."""
    if enabled():
        _events[what] += 1


def emit(summary: Dict[str, Any]) -> Optional[str]:
    """Append one example's summary as a JSON line to this process's file; returns the path."""
    directory = os.environ.get(STATS_ENV)
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    path = os.path.join(directory, f"{worker}-{os.getpid()}.jsonl")
    line = json.dumps(summary, sort_keys=True, default=repr) + "\n"
    # One write per line on an O_APPEND file: a reader never sees half a line from another example.
    with open(path, "a") as f:
        f.write(line)
    return path


def summarize(machine, events: Dict[str, int]) -> Dict[str, Any]:
    """What one example of ``machine`` exercised; tolerant of machines that lack some attributes."""
    recorder = getattr(machine, "recorder", None)
    steps = [s for s in getattr(recorder, "steps", ()) if s.rule != "teardown"]
    first = steps[0].args if steps and steps[0].rule == "start_cluster" else {}
    max_term = int(getattr(machine, "max_leader_term", 0) or 0)
    cluster = getattr(machine, "cluster", None)
    if cluster is not None:
        try:
            for node_id in cluster.node_ids:
                if cluster.is_up(node_id):
                    max_term = max(max_term, cluster.state(node_id).term)
        except Exception:  # statistics must never fail an example
            pass
    return {
        "machine": f"{type(machine).__module__}.{type(machine).__qualname__}",
        "network": getattr(machine, "network", None),
        "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        "nodes": first.get("nodes"),
        "cluster_seed": first.get("seed"),
        "steps": len(steps),
        "events": dict(sorted(events.items())),
        "elections": int(events.get("election won", 0)),
        "snapshots_installed": int(events.get("snapshot installed", 0)),
        "max_term": max_term,
        "failed": bool(getattr(machine, "failed", False)),
    }


def example_done(machine) -> None:
    """End of one example (the machine's teardown): emit its summary and start counting afresh."""
    events = dict(_events)
    _events.clear()
    if enabled():
        try:
            emit(summarize(machine, events))
        except OSError:
            pass


# --- the reader: the campaign tails the files the writer above appends ---------------------------
class Statistics:
    """Aggregates the JSON lines the workers append (see :func:`emit`), read incrementally."""

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
