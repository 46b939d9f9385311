"""What every ``raft-harness`` command shares: exit codes, the one-line usage error, durations, the checkout."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 3
PROG = "raft-harness"


class UsageError(Exception):
    """Bad command line or input: reported as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
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



def project_root() -> Path:
    """The source checkout this harness runs from (holds ``properties/`` and ``conftest.py``)."""
    return Path(__file__).resolve().parents[2]
