"""``raft-harness`` / ``python -m harness``: bad input, fuzz campaigns, replays and reports.

Campaigns run real pytest subprocesses on real pysyncobj nodes.  Apart from
one end-to-end run of ``properties/``, they fuzz the small machines in
``tests/cli_machines.py``: one with an injected bug every example hits (found,
shrunk and reported in seconds), one with nothing to find.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from harness.cli import command as cli, common, fuzz as cli_fuzz
from harness.fuzz.workers import report_dir_name, seed_for
from harness.adapter.patching import inject, installed
from harness.fuzz.stats import Statistics, parse_node_range
from harness.util import alloc_port

from cli_machines import FlakyRaft, InjectedBugRaft, PatchedOnlyBugRaft

HERE = Path(__file__).resolve().parent
MACHINES = HERE / "cli_machines.py"


def run_cli(*args, timeout=300, cwd=None):
    env = dict(os.environ)
    for var in ("RAFT_HARNESS_REPORT", "RAFT_HARNESS_NODES", "RAFT_HARNESS_STATS", "RAFT_HARNESS_SEED",
                "RAFT_HARNESS_REPORT_BASE"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, cwd=cwd or str(HERE.parent), env=env)


def record(machine_cls, steps, directory, monkeypatch):
    """Run ``steps`` on ``machine_cls`` as Hypothesis would, writing counterexample.json if it fails."""
    monkeypatch.setenv("RAFT_HARNESS_REPORT", str(directory))
    machine = machine_cls()
    error = None
    try:
        for name, args in steps:
            getattr(machine, name)(**args)
            for inv in machine.invariants:
                inv.function(machine)
    except AssertionError as e:
        error = e
    finally:
        machine.teardown()
    monkeypatch.delenv("RAFT_HARNESS_REPORT")
    return error


BUG_STEPS = [("start_cluster", dict(nodes=3, seed=5)), ("partition", dict(side=frozenset({"n3"}))),
             ("wait", dict(seconds=2.0)), ("write", dict(key="a", via="leader")), ("heal", {}),
             ("wait", dict(seconds=2.0)), ("wait", dict(seconds=8.0))]


@pytest.fixture
def bug_report(tmp_path, monkeypatch):
    directory = tmp_path / "bug"
    error = record(InjectedBugRaft, BUG_STEPS, directory, monkeypatch)
    assert error is not None and (directory / "counterexample.json").exists()
    return directory


def one_line_error(capsys_or_result, code):
    assert code == 2
    err = capsys_or_result
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("raft-harness: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- small parsers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [("20s", 20), ("90", 90), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400),
                                           ("500ms", 0.5), ("2d", 172800), (" 10 s ", 10)])
def test_parse_duration(text, seconds):
    assert common.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "1h30", "m5", "0s", "-3s", "1e3s", "5x"])
def test_parse_duration_rejects(text):
    with pytest.raises(common.UsageError):
        common.parse_duration(text)


def test_node_ranges():
    assert parse_node_range("3-5") == (3, 5)
    assert parse_node_range("4") == (4, 4)
    for bad in ("2-9", "5-3", "0", "three", "3-", "8"):
        with pytest.raises(ValueError):
            parse_node_range(bad)


def test_plugin_names_and_seeds():
    assert report_dir_name("properties/test_raft.py::TestFifoRaftShard0::runTest") == "test_raft.TestFifoRaftShard0"
    a = seed_for(7, "properties/test_raft.py::TestFifoRaftShard0::runTest")
    assert a == seed_for(7, "properties/test_raft.py::TestFifoRaftShard0::runTest")
    assert a != seed_for(7, "properties/test_raft.py::TestFifoRaftShard1::runTest")
    assert a != seed_for(8, "properties/test_raft.py::TestFifoRaftShard0::runTest")


# --- bad input: exit 2, one line, no traceback -------------------------------------------------------
BAD = [
    (["fuzz", "--budget", "20s", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice"),
    ([], "choose a command"),
    (["fuzz"], "--budget"),
    (["fuzz", "--budget", "soon"], "cannot parse 'soon'"),
    (["fuzz", "--budget", "0s"], "more than zero"),
    (["fuzz", "--budget", "10s", "--workers", "0"], "--workers must be at least 1"),
    (["fuzz", "--budget", "10s", "--workers", "many"], "--workers must be a positive integer"),
    (["fuzz", "--budget", "10s", "--nodes", "2-9"], "--nodes"),
    (["fuzz", "--budget", "10s", "--network", "carrier-pigeon"], "invalid choice"),
    (["fuzz", "--budget", "10s", "--seed", "x"], "--seed"),
    (["fuzz", "--budget", "10s", "--database", "ftp://example/db"], "--database"),
    (["fuzz", "--budget", "10s", "--properties", "no/such/file.py"], "no such file"),
    (["report", "/no/such/report"], "no such file or directory"),
    (["replay", "/no/such/report"], "no such report"),
    (["replay", "AAAA@@@"], "not a @reproduce_failure blob"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) or "nothing" for a, _ in BAD])
def test_bad_usage(args, message, capsys):
    code = cli.main(args)
    out, err = capsys.readouterr()
    assert out == ""
    assert message in one_line_error(err, code)


@pytest.mark.parametrize("args", [["fuzz", "--budget", "20s", "--bogus"], ["fuzz", "--budget", "later"],
                                  ["fuzz", "--budget", "5s", "--workers", "0"], ["report", "/no/such/dir"]])
def test_bad_usage_in_a_real_process(args):
    r = run_cli(*args, timeout=120)
    assert r.stdout == ""
    one_line_error(r.stderr, r.returncode)


def test_unreachable_redis(capsys):
    port = alloc_port()  # allocated, never listened on
    code = cli.main(["fuzz", "--budget", "5s", "--database", f"redis://127.0.0.1:{port}/0"])
    line = one_line_error(capsys.readouterr().err, code)
    assert "redis" in line.lower()


@pytest.mark.parametrize("command", ["report", "replay"])
def test_not_a_report(command, tmp_path, capsys):
    def error_of(path):
        code = cli.main([command, str(path)])
        return one_line_error(capsys.readouterr().err, code)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no counterexample.json" in error_of(empty)
    bad = tmp_path / "bad.json"
    bad.write_text("this is not json")
    assert "invalid JSON" in error_of(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": 1, "hello": "world"}))
    assert "not a counterexample report" in error_of(other)
    binary = tmp_path / "counterexample.json"
    binary.write_bytes(bytes(range(256)))
    assert "not a counterexample report" in error_of(tmp_path)


def test_report_dir_already_used(tmp_path, capsys, bug_report):
    code = cli.main(["fuzz", "--budget", "5s", "--report", str(bug_report.parent)])
    assert "already holds counterexamples" in one_line_error(capsys.readouterr().err, code)


def test_help_exits_0():
    r = run_cli("--help", timeout=120)
    assert r.returncode == 0 and "fuzz" in r.stdout and "replay" in r.stdout and "report" in r.stdout
    r = run_cli("fuzz", "--help", timeout=120)
    assert r.returncode == 0 and "--budget" in r.stdout and "--keep-going" in r.stdout


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("raft-harness") == "harness.cli:console_main", \
        "setup.cfg must declare raft-harness = harness.cli:console_main (then reinstall)"


# --- report ------------------------------------------------------------------------------------------
def test_report_renders_next_to_the_json(bug_report, capsys):
    assert cli.main(["report", str(bug_report)]) == 0
    html = (bug_report / "report.html").read_text()
    assert capsys.readouterr().out.strip() == str(bug_report / "report.html")
    assert "injected_bug" in html and 'id="spacetime"' in html
    assert cli.main(["report", str(bug_report / "counterexample.json"), "-o", str(bug_report / "b.html")]) == 0
    assert (bug_report / "b.html").read_text() == html


# --- replay ------------------------------------------------------------------------------------------
def test_replay_confirms_a_counterexample(bug_report, capsys):
    assert cli.main(["replay", str(bug_report)]) == 1
    out = capsys.readouterr().out
    assert "both replays took the same path" in out
    assert "match the recording step for step" in out
    assert "STILL FAILS: SafetyViolation: injected_bug" in out


def test_replay_of_a_fixed_bug_passes(bug_report, capsys):
    # The same steps on a machine without the injected bug: replayed, and no longer failing.
    assert cli.main(["replay", str(bug_report), "--machine", "harness.fuzz.machine.RaftMachine"]) == 0
    assert "NO LONGER FAILS" in capsys.readouterr().out


def test_replay_installs_the_patches_a_recording_was_made_with(tmp_path, monkeypatch, capsys):
    directory = tmp_path / "patched"
    with inject("snapshot_chunk_commit"):
        assert record(PatchedOnlyBugRaft, BUG_STEPS, directory, monkeypatch) is not None
    assert installed() == []
    path = directory / "counterexample.json"
    doc = json.loads(path.read_text())
    assert doc["patches"] == ["snapshot_chunk_commit"]
    assert "patched with snapshot_chunk_commit" in doc["details"].splitlines()[1]
    assert cli.main(["report", str(directory)]) == 0
    assert "pysyncobj 0.3" in (directory / "report.html").read_text()
    assert "patched with snapshot_chunk_commit &middot;" in (directory / "report.html").read_text()
    assert cli.main(["replay", str(directory)]) == 1
    out = capsys.readouterr().out
    assert "recorded with patches snapshot_chunk_commit installed" in out and "STILL FAILS" in out
    assert installed() == []
    # Without the patch the same steps pass: the replay above really ran patched code.
    path.write_text(json.dumps(dict(doc, patches=[])))
    assert cli.main(["replay", str(directory)]) == 0
    assert "NO LONGER FAILS" in capsys.readouterr().out


def test_replay_rejects_patches_it_does_not_know(bug_report, capsys):
    path = bug_report / "counterexample.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), patches=["no_such_patch"])))
    code = cli.main(["replay", str(bug_report)])
    assert "cannot install the patches ['no_such_patch']" in one_line_error(capsys.readouterr().err, code)


def test_replay_falls_back_to_the_network_machine(bug_report, capsys):
    path = bug_report / "counterexample.json"
    doc = json.loads(path.read_text())
    doc["machine"] = "no_such_module.NoSuchMachine"
    path.write_text(json.dumps(doc))
    assert cli.main(["replay", str(bug_report)]) == 0  # RaftMachine has no injected bug
    out = capsys.readouterr().out
    assert "cannot import 'no_such_module.NoSuchMachine'; replaying on harness.fuzz.machine.RaftMachine" in out


def test_replay_finds_a_machine_module_by_the_file_the_report_names(bug_report, tmp_path, capsys):
    """pytest imports a test file outside any package by its bare name (bench/properties/, a project's own
    folder): only its recorded folder makes it importable again, for replay and for triage."""
    path = bug_report / "counterexample.json"
    doc = json.loads(path.read_text())
    assert doc["machine_file"] == str(HERE / "cli_machines.py")
    elsewhere = tmp_path / "campaigns"
    elsewhere.mkdir()
    module = elsewhere / "own_campaign.py"
    module.write_text("from cli_machines import InjectedBugRaft as OwnCampaign\n")  # tests/ is on sys.path
    path.write_text(json.dumps(dict(doc, machine="own_campaign.OwnCampaign", machine_file=None)))
    assert cli.main(["replay", str(bug_report)]) == 0  # not importable: RaftMachine, which has no such bug
    assert "cannot import 'own_campaign.OwnCampaign'" in capsys.readouterr().out
    sys.modules.pop("own_campaign", None)
    path.write_text(json.dumps(dict(doc, machine="own_campaign.OwnCampaign", machine_file=str(module))))
    before = list(sys.path)
    assert cli.main(["replay", str(bug_report)]) == 1
    out = capsys.readouterr().out
    assert "on cli_machines.InjectedBugRaft" in out and "STILL FAILS" in out
    assert str(elsewhere) not in sys.path and sys.path == before
    sys.modules.pop("own_campaign", None)


def test_replay_on_a_machine_that_does_not_fit(bug_report, capsys):
    code = cli.main(["replay", str(bug_report), "--machine", "cli_machines.QuietRaft"])
    assert "has no rule 'partition'" in one_line_error(capsys.readouterr().err, code)
    path = bug_report / "counterexample.json"
    doc = json.loads(path.read_text())
    doc["steps"][2]["args"] = {"node": "n1"}  # wait(seconds=...) recorded with a node
    path.write_text(json.dumps(doc))
    code = cli.main(["replay", str(bug_report)])
    assert "does not take the recorded arguments ['node']" in one_line_error(capsys.readouterr().err, code)


def test_replay_reports_nondeterminism_with_the_step(tmp_path, monkeypatch, capsys):
    directory = tmp_path / "flaky"
    steps = [("start_cluster", dict(nodes=3, seed=2)), ("write", dict(key="a", via="leader")),
             ("wait", dict(seconds=2.0)), ("write", dict(key="b", via="leader"))]
    # FlakyRaft passes, so no counterexample is written: build one from a recording of a run.
    monkeypatch.setenv("RAFT_HARNESS_REPORT", str(tmp_path / "unused"))
    machine = FlakyRaft()
    try:
        for name, args in steps:
            getattr(machine, name)(**args)
            machine.raft_safety()
    finally:
        machine.teardown()
    monkeypatch.delenv("RAFT_HARNESS_REPORT")
    doc = {"format": 1, "machine": "cli_machines.FlakyRaft", "network": "fifo", "seed": 2,
           "pysyncobj_version": None, "error": "none", "message": "", "violations": [],
           "steps": machine.recorder.to_json()}
    directory.mkdir()
    (directory / "counterexample.json").write_text(json.dumps(doc))
    assert cli.main(["replay", str(directory)]) == 3
    out = capsys.readouterr().out
    assert "NONDETERMINISTIC: the two replays diverged at step 2 (state.wait(seconds=2.0))" in out
    assert "harness bug" in out


def test_replay_of_a_blob(capsys):
    with pytest.raises(AssertionError) as info:
        run_state_machine_as_test(InjectedBugRaft, settings=settings(
            max_examples=50, stateful_step_count=20, database=None, derandomize=True, deadline=None,
            print_blob=True, phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck)))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    blob = re.search(r"@reproduce_failure\([^)]*\)", notes).group(0)
    assert cli.main(["replay", blob, "--machine", "cli_machines.InjectedBugRaft"]) == 1
    out = capsys.readouterr().out
    assert "both replays took the same path" in out and "STILL FAILS" in out
    assert "state.start_cluster(" in out  # Hypothesis' own print-out of the steps, once


# --- fuzz --------------------------------------------------------------------------------------------
def _no_process_left(report_dir):
    needle = f"RAFT_HARNESS_REPORT_BASE={report_dir}".encode()
    left = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    left.append(pid)
        except OSError:
            continue
    return left


def test_fuzz_end_to_end_on_the_properties(tmp_path):
    """One real campaign on properties/ (whatever it finds in 20 seconds is fine)."""
    from harness.adapter.observe import VERSION

    report = tmp_path / "report"
    r = run_cli("fuzz", "--budget", "20s", "--workers", "2", "--report", report,
                "--database", tmp_path / "db", timeout=400)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert r.stdout.splitlines()[0].startswith(f"raft-harness fuzz: pysyncobj {VERSION}")
    for row in ("examples", "steps", "elections", "max term", "snapshots installed", "violations", "fault"):
        assert re.search(rf"^{row}\b", r.stdout, re.M), f"no {row!r} row in the summary:\n{r.stdout}"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["examples"] > 0 and summary["steps"] > 0 and summary["elections"] > 0, summary
    assert summary["faults"] or r.returncode == 1, "no fault exercised in 20 seconds"
    assert not _no_process_left(report)
    if r.returncode == 1:
        assert summary["violations"]
        for v in summary["violations"]:
            if os.path.exists(os.path.join(v["directory"], "counterexample.json")):
                assert os.path.exists(os.path.join(v["directory"], "report.html"))
    else:
        assert not summary["violations"]
        assert "stopped: budget spent" in r.stdout


def test_fuzz_stops_at_the_first_violation_and_reports_it(tmp_path):
    report = tmp_path / "report"
    started = time.monotonic()
    r = run_cli("fuzz", "--budget", "2m", "--workers", "1", "--properties", f"{MACHINES}::TestInjectedBug",
                "--report", report, "--database", tmp_path / "db", timeout=400)
    assert r.returncode == 1, r.stdout + r.stderr
    assert time.monotonic() - started < 110, "did not stop at the violation"
    assert "stopped: violation found" in r.stdout
    assert re.search(r"^violations\s+1$", r.stdout, re.M)
    case = report / "cli_machines.TestInjectedBug"
    for name in ("counterexample.json", "report.html", "failure.txt", "outcome.json"):
        assert (case / name).exists(), name
    doc = json.loads((case / "counterexample.json").read_text())
    assert doc["violations"][0]["invariant"] == "injected_bug"
    assert "reproduce_failure" in (case / "failure.txt").read_text()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["examples"] > 0 and summary["failing_examples"] > 0
    assert f"raft-harness replay {case}" in r.stdout
    assert not _no_process_left(report)
    # the shrunk counterexample replays, twice alike, and still fails
    rr = run_cli("replay", case, timeout=200)
    assert rr.returncode == 1, rr.stdout + rr.stderr
    assert "match the recording step for step" in rr.stdout and "STILL FAILS" in rr.stdout


def test_fuzz_keep_going_reports_every_violation(tmp_path):
    report = tmp_path / "report"
    r = run_cli("fuzz", "--budget", "2m", "--workers", "2", "--keep-going",
                "--properties", f"{MACHINES}::TestInjectedBug", "--properties", f"{MACHINES}::TestInjectedBugToo",
                "--report", report, "--database", tmp_path / "db", timeout=400)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"^violations\s+2$", r.stdout, re.M), r.stdout
    for name in ("cli_machines.TestInjectedBug", "cli_machines.TestInjectedBugToo"):
        assert (report / name / "report.html").exists()


def _examples(report):
    lines = []
    for path in sorted((report / "stats").glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def test_fuzz_budget_nodes_and_seed(tmp_path):
    """Nothing to find: the budget ends the run, exit 0, no process left; --nodes and --seed are honoured."""
    runs = []
    for i in range(2):
        report = tmp_path / f"report{i}"
        started = time.monotonic()
        r = run_cli("fuzz", "--budget", "8s", "--workers", "1", "--nodes", "4", "--seed", "7",
                    "--properties", f"{MACHINES}::TestQuiet", "--report", report, timeout=300)
        elapsed = time.monotonic() - started
        assert r.returncode == 0, r.stdout + r.stderr
        assert "stopped: budget spent" in r.stdout or "every example of the seeded run ran" in r.stdout
        assert elapsed < 8 + 30, f"the 8s budget took {elapsed:.0f}s"
        assert not _no_process_left(report)
        examples = _examples(report)
        assert examples, r.stdout
        assert {e["nodes"] for e in examples} == {4}
        summary = json.loads((report / "summary.json").read_text())
        assert summary["cluster_sizes"] == {"4": len(examples)}
        assert summary["violations"] == []
        runs.append(examples)
    # the same seed generates the same examples, in the same order
    common = min(len(runs[0]), len(runs[1]))
    assert common >= 2, runs
    key = ("cluster_seed", "steps", "events", "max_term", "nodes")
    first = [[e[k] for k in key] for e in runs[0][:common]]
    second = [[e[k] for k in key] for e in runs[1][:common]]
    assert first == second
    assert len({e["cluster_seed"] for e in runs[0]}) > 1  # and the examples do differ from each other


def test_fuzz_passes_known_fixes_to_the_workers(tmp_path):
    """(Which tests the option patches is tested in tests/test_known_fixes.py.)"""
    r = run_cli("fuzz", "--budget", "4s", "--workers", "1", "--known-fixes", "--properties", f"{MACHINES}::TestQuiet",
                "--report", tmp_path / "report", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "known fixes installed" in r.stdout.splitlines()[1]
    assert "note: --known-fixes patches only tests under a properties/ directory" in r.stdout
    assert "--raft-known-fixes" in (tmp_path / "report" / "pytest.log").read_text()


def test_plain_progress_lines_when_not_a_terminal():
    import io

    stream = io.StringIO()
    progress = cli_fuzz.Progress(stream, budget=100)
    assert not progress.tty
    st = Statistics("/nonexistent")
    st.add({"steps": 40, "events": {"fault: crash": 2, "election won": 1}, "elections": 1, "max_term": 3,
            "nodes": 3})
    progress.update(1.0, st, [])
    progress.update(2.0, st, [])  # within the interval: no new line
    progress.update(10.0, st, [], force=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert "examples 1" in lines[0] and "steps 40" in lines[0] and "faults 2 of 1 kind |" in lines[0]
    tty = io.StringIO()
    live = cli_fuzz.Progress(tty, budget=100, tty=True)
    live.update(1.0, st, [])
    live.update(2.0, st, [])
    live.done()
    assert tty.getvalue().count("\r") == 2 and tty.getvalue().endswith("\n")


def test_the_distinct_bug_table_has_one_row_per_named_bug_and_per_new_signature():
    from harness.cli.bugs import Hit, bug_table

    hits = [Hit("r/a", "known: finding 8", ("state_machine_safety",), 6, 8.1, True),
            Hit("r/b", "known: finding 8", ("durability",), 9, 20.0, True),
            Hit("r/c", "symptom of finding 17", ("no_node_errors",), 3, 300.0, True),
            Hit("r/d", "symptom of finding 17", ("LivenessViolation",), 5, 310.0, False),
            Hit("r/e", "NEW", ("no_node_errors",), 4, 30.0, True),
            Hit("r/f", "NEW", ("linearizability",), 7, 40.0, True)]
    rows = [line.split("  ")[0] for line in bug_table(hits).splitlines()[4:-1]]
    assert rows == ["known: finding 8", "NEW (linearizability)", "NEW (no_node_errors)", "symptom of finding 17"]
