"""``counterexample.json``: the one owner of the format a failing run leaves behind.

Written by the machine when a property breaks, read by ``raft-harness replay`` and ``report``, the HTML
page, triage and the campaign summary.  ``format`` is versioned: a reader refuses a newer format with
a one-line reason instead of misreading it.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Optional, Tuple

from harness.adapter.patching import installed as installed_patches

REPORT_JSON = "counterexample.json"
REPORT_HTML = "report.html"
#: Version of the JSON layout below; bump it when a field changes meaning or goes away.
FORMAT_VERSION = 1


class ReportError(ValueError):
    """The given path is not a readable counterexample report (one-line reason)."""


def find_report(path: str) -> str:
    """The ``counterexample.json`` for ``path`` (the file itself or a directory holding one)."""
    if not os.path.exists(path):
        raise ReportError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        candidate = os.path.join(path, REPORT_JSON)
        if not os.path.isfile(candidate):
            raise ReportError(f"{path}: not a counterexample report (no {REPORT_JSON} in it)")
        return candidate
    return path


def load_report(path: str) -> Tuple[Dict[str, Any], str]:
    """(document, path of the JSON) for a report directory or JSON file; ReportError if it is not one."""
    json_path = find_report(path)
    try:
        with open(json_path, encoding="utf-8") as f:
            doc = json.load(f)
    except UnicodeDecodeError:
        raise ReportError(f"{json_path}: not a counterexample report (not text)") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{json_path}: not a counterexample report (invalid JSON: {e.msg} at line {e.lineno})") \
            from None
    except OSError as e:
        raise ReportError(f"{json_path}: cannot read it ({e.strerror})") from None
    validate(doc, json_path)
    return doc, json_path


def validate(doc: Any, where: str = "report") -> None:
    if not isinstance(doc, dict):
        raise ReportError(f"{where}: not a counterexample report (expected a JSON object)")
    version = doc.get("format", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ReportError(f"{where}: written in counterexample format {version!r}; this harness reads up to "
                          f"format {FORMAT_VERSION} (upgrade raft-harness)")
    missing = [k for k in ("steps", "violations", "machine") if k not in doc]
    if missing:
        raise ReportError(f"{where}: not a counterexample report (missing {', '.join(missing)})")
    if not isinstance(doc["steps"], list) or not all(isinstance(s, dict) and "rule" in s for s in doc["steps"]):
        raise ReportError(f"{where}: not a counterexample report ('steps' must be a list of recorded steps)")
    if not doc["steps"]:
        raise ReportError(f"{where}: not a counterexample report (no steps recorded)")
    if not isinstance(doc["violations"], list):
        raise ReportError(f"{where}: not a counterexample report ('violations' must be a list)")
    for v in doc["violations"]:
        at = v.get("at") if isinstance(v, dict) else None
        if at is not None and (isinstance(at, bool) or not isinstance(at, (int, float))):
            raise ReportError(f"{where}: not a counterexample report (a violation's 'at' must be a number, "
                              f"got {at!r})")



def headline(directory: str) -> Optional[str]:
    """``"Error: first line"`` of the counterexample in ``directory``, or None if there is none readable."""
    try:
        with open(os.path.join(directory, REPORT_JSON), encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return f"{doc.get('error')}: {doc.get('message')}"


def write_counterexample(directory: str, machine, error: BaseException) -> str:
    """Write ``counterexample.json`` for a failed run of ``machine``; returns its path.

    Holds what a reader or ``replay`` needs: the steps as data and as code,
    the pysyncobj version and the patches installed on it, channel model and
    seed, the broken property (with, from a stream checker, the time, node and message of the
    event that broke it), per step the node states, the messages delivered and the trace digest,
    and what pysyncobj itself logged (``pysyncobj_log``: the last lines with virtual time and node,
    every CRITICAL line, how many older lines were dropped).
    """
    cluster = machine.cluster
    log = getattr(cluster, "pysyncobj_log", None)
    violations = [dict(invariant=v.invariant, message=v.message, nodes=list(v.nodes), terms=list(v.terms),
                       indexes=list(v.indexes), at=v.at, node=v.node, handling=v.handling)
                  for v in getattr(error, "violations", ())]
    doc = {
        "format": FORMAT_VERSION,
        "machine": f"{type(machine).__module__}.{type(machine).__qualname__}",
        # where that module was: pytest imports a test file outside any package by its bare name, which
        # only its own folder makes importable again (bench/properties/, a project's fuzz/ folder)
        "machine_file": getattr(sys.modules.get(type(machine).__module__), "__file__", None),
        "pysyncobj_version": cluster.pysyncobj_version if cluster else None,
        "patches": installed_patches(),  # harness.adapter.patching patches in effect (known fixes, injected bugs)
        "network": machine.network,
        "seed": cluster.seed if cluster else None,
        "error": type(error).__name__,
        "message": str(error).split("\n")[0],
        "violations": violations or [dict(invariant=type(error).__name__, message=str(error).split("\n")[0],
                                          nodes=[], terms=[], indexes=[])],
        "details": str(error),
        "steps": machine.recorder.to_json(),
        "pysyncobj_log": log.to_json() if log is not None else None,
    }
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, REPORT_JSON)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=repr)
    os.replace(tmp, path)
    return path


def annotate(directory: str, **fields: Any) -> str:
    """Add top-level ``fields`` (e.g. ``triage``, ``minimized``) to the counterexample in ``directory``."""
    path = os.path.join(directory, REPORT_JSON)
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    doc.update(fields)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=repr)
    os.replace(tmp, path)
    return path
