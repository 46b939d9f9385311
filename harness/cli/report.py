"""``raft-harness report``: (re)render ``report.html`` for a saved counterexample."""
from __future__ import annotations

import argparse
import sys

from harness.cli.common import EXIT_OK, UsageError
from harness.report import counterexample, html


def cmd_report(args: argparse.Namespace) -> int:
    try:
        path = html.write_html(args.report, out=args.output)
    except counterexample.ReportError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write the report: {e.strerror}: {e.filename}") from None
    sys.stdout.write(f"{path}\n")
    return EXIT_OK
