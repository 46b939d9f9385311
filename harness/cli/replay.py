"""``raft-harness replay``: re-run a counterexample twice, confirm it still fails and that both runs agree.

A report directory (or its ``counterexample.json``) is replayed step by step with the patches it was
recorded with (:meth:`harness.fuzz.machine.RaftMachine.replay`); a ``@reproduce_failure`` blob goes
through Hypothesis itself.  Two replays that deliver different messages are a harness bug, said so.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from typing import Iterator, List, Optional, Sequence, Tuple

from harness.cli.common import EXIT_BROKEN, EXIT_OK, EXIT_VIOLATION, UsageError
from harness.fuzz.replay import (ReplayError, ReplayRun, default_machine, detailed_recording, load_machine,
                                 replay_steps, replay_support)
from harness.report import counterexample, html

_BLOB = re.compile(r"""@?reproduce_failure\(\s*['"]([^'"]+)['"]\s*,\s*b?['"]([A-Za-z0-9+/=\s]+)['"]\s*\)""")


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


def _replay(cls: type, steps) -> ReplayRun:
    try:
        with replay_support():
            return replay_steps(cls, steps)
    except ReplayError as e:
        raise UsageError(str(e)) from None


def replay_report(path: str, machine_name: Optional[str], out) -> int:
    try:
        doc, json_path = counterexample.load_report(path)
    except counterexample.ReportError as e:
        raise UsageError(str(e)) from None
    from harness.adapter.observe import VERSION

    name = machine_name or doc.get("machine") or ""
    cls = load_machine(name, None if machine_name else doc.get("machine_file")) if name else None
    if cls is None:
        if machine_name:
            raise UsageError(f"--machine: cannot import a state machine class named {machine_name!r}")
        cls = default_machine(str(doc.get("network") or "fifo"))
        out.write(f"note: cannot import {name!r}; replaying on {cls.__module__}.{cls.__qualname__} "
                  f"(network {cls.network})\n")
    steps = doc["steps"]
    codes = [html.step_code(s) for s in steps]
    recorded_on = doc.get("pysyncobj_version")
    patches = [str(p) for p in doc.get("patches") or ()]
    out.write(f"replaying {json_path}: {len(steps)} steps on {cls.__module__}.{cls.__qualname__}, network "
              f"{doc.get('network')}, seed {doc.get('seed')}; recorded on pysyncobj {recorded_on}, "
              f"replaying on {VERSION}\n")
    if patches:
        out.write(f"recorded with patches {', '.join(patches)} installed: replaying with them\n")
    out.flush()
    with patched(patches):
        first = _replay(cls, steps)
        second = _replay(cls, steps)
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
        cls = load_machine(machine_name)
        if cls is None:
            raise UsageError(f"--machine: cannot import a state machine class named {machine_name!r}")
    else:
        cls = default_machine(network)
    out.write(f"replaying a @reproduce_failure blob on {cls.__module__}.{cls.__qualname__} (Hypothesis {version})\n")
    out.flush()
    runs, outputs = [], []
    for _ in range(2):
        instances: list = []

        def init(self, _base=cls, _seen=instances):
            _base.__init__(self)
            detailed_recording(self)
            _seen.append(self)

        capture = type(cls.__name__, (cls,), {"__init__": init, "__module__": cls.__module__,
                                               "__qualname__": cls.__qualname__})
        capture = reproduce_failure(version, blob)(capture)
        lines: List[str] = []
        error: Optional[BaseException] = None
        with replay_support(), with_reporter(lambda s, _l=lines: _l.append(str(s))):
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
    from harness.ledger.bugs import known_fixes

    with patched(known_fixes() if args.known_fixes else []):
        try:
            return replay_blob(blob[0], blob[1], args.machine, args.network, sys.stdout)
        except UsageError as e:
            if args.known_fixes and "does not fit" in str(e):
                raise UsageError(f"{e} (with --known-fixes the patched run may draw differently from the one "
                                 f"that printed the blob: replay its report directory instead)") from None
            raise
