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

import argparse
import sys
from typing import Optional, Sequence

from harness.cli.common import EXIT_USAGE, PROG, UsageError, OneLineParser
from harness.cli.fuzz import cmd_fuzz
from harness.cli.replay import cmd_replay
from harness.cli.report import cmd_report


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Fuzz pysyncobj clusters, replay and render counterexamples.")
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
    fz.add_argument("--profile", default="raft-fuzz",
                    help="Hypothesis profile (default raft-fuzz; see harness.fuzz.profiles)")
    fz.add_argument("--known-fixes", action="store_true",
                    help="fuzz pysyncobj with the fixes for findings already made (harness.adapter.fixes.KNOWN_FIXES), "
                         "to hunt for new bugs")
    fz.add_argument("--triage-seconds", type=_seconds("--triage-seconds"), default=60.0, metavar="S",
                    help="per counterexample: replay it with each fix in the ledger to name the bug, for at most "
                         "S wall seconds (default 60; 0: no triage)")
    fz.add_argument("--minimize-seconds", type=_seconds("--minimize-seconds"), default=30.0, metavar="S",
                    help="per counterexample: remove steps while the same violation and label remain, for at "
                         "most S wall seconds (default 30; 0: keep Hypothesis' shrink)")
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


def _seconds(option: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{option} must be a number of seconds >= 0, got {text!r}") from None
        if not value >= 0:
            raise UsageError(f"{option} must be a number of seconds >= 0, got {text!r}")
        return value
    return parse


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
