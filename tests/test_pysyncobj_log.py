"""pysyncobj's own log lines are kept per cluster and node, out of pytest's captured log, and CRITICAL ones count.

See :mod:`harness.sim.pysyncobj_log`.  The warning used throughout is the one
pysyncobj writes when it cannot store a dump ("Failed to store full dump"),
which every supported release logs (0.3.11 through the root logger, later ones
through ``pysyncobj.*`` loggers).
"""
from __future__ import annotations

import inspect
import json
import logging
import sys

import pysyncobj.syncobj
import pytest

from harness import Cluster, ReorderFilter
from harness.fuzz import stats
from harness.fuzz.machine import UnreliableNetworkRules
from harness.environment import STATS_ENV
from harness.report.counterexample import write_counterexample
from harness.report.text import describe
from harness.sim import pysyncobj_log
from harness.sim.pysyncobj_log import MAX_CRITICAL, MAX_LINES, LogLine, PysyncobjLog

DUMP_WARNING = "Failed to store full dump"


def _failed_dump(c: Cluster, node: str) -> None:
    c.wait_leader()
    c.must_put("k", 1)
    c.storage.enable("dump_write_fails", node)
    c.force_snapshot(node)
    c.run_for(0.5)


def _from_pysyncobj(caplog) -> list:
    return [r for r in caplog.records if r.name.startswith("pysyncobj") or DUMP_WARNING in r.getMessage()]


def test_lines_are_tagged_with_node_and_time_and_kept_out_of_pytests_log(caplog):
    caplog.set_level(logging.WARNING)
    with Cluster(3, seed=2) as c:
        _failed_dump(c, "n1")
        [line] = [line for line in c.pysyncobj_log.lines if line.message == DUMP_WARNING]
        assert (line.node, line.level) == ("n1", "WARNING") and 0 < line.time <= c.now
        assert str(line).startswith(f"t={line.time:.4f} n1  WARNING  {DUMP_WARNING}")
        assert f"n1  WARNING  {DUMP_WARNING}" in describe(c)
        assert _from_pysyncobj(caplog) == []
    assert not pysyncobj_log.attached()
    logging.getLogger("pysyncobj.syncobj").warning("after close")
    assert [r.getMessage() for r in _from_pysyncobj(caplog)] == ["after close"]  # back to normal


def test_records_outside_a_running_node_pass_through(caplog):
    caplog.set_level(logging.WARNING)
    with Cluster(1, seed=1) as c:
        logging.getLogger("pysyncobj.syncobj").warning("written by the test, not by a node")
        logging.warning("someone else's root warning")
        assert c.pysyncobj_log.total == 0
    assert [r.getMessage() for r in caplog.records] == ["written by the test, not by a node",
                                                         "someone else's root warning"]


def test_each_line_goes_to_the_cluster_that_ran_the_node():
    with Cluster(3, seed=2) as quiet, Cluster(3, seed=2) as failing:
        quiet.wait_leader()
        _failed_dump(failing, "n2")
        quiet.run_for(0.5)
        assert quiet.pysyncobj_log.total == 0
        assert [line.node for line in failing.pysyncobj_log.lines] == ["n2"]
    assert not pysyncobj_log.attached()


def _record(level: int, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord("pysyncobj.syncobj", level, __file__, 1, msg, args, None)


def test_the_log_is_bounded_but_keeps_every_critical_line_count():
    seen = []
    log = PysyncobjLog(lambda: "n3", lambda: 1.5)
    log.on_critical = seen.append
    for i in range(MAX_LINES + 10):
        assert log.take(_record(logging.WARNING, "warning %d", i))
    for i in range(MAX_CRITICAL + 5):
        log.take(_record(logging.CRITICAL, "truncating already-applied log entries from index %d", i))
    assert len(log.lines) == MAX_LINES and log.dropped == log.total - MAX_LINES
    assert len(log.critical) == MAX_CRITICAL and log.critical_total == len(seen) == MAX_CRITICAL + 5
    assert seen[0] == LogLine(1.5, "n3", "CRITICAL", "truncating already-applied log entries from index 0",
                              "truncating already-applied log entries from index %d")
    assert seen[0].gist == "truncating already-applied log entries from index"
    doc = log.to_json()
    assert len(doc["lines"]) == MAX_LINES and doc["critical_total"] == MAX_CRITICAL + 5
    assert not PysyncobjLog(lambda: None, lambda: 0.0).take(_record(logging.WARNING, "no node running"))


def test_an_exception_logged_with_the_record_is_kept_as_one_line():
    log = PysyncobjLog(lambda: "n1", lambda: 0.0)
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        record = logging.LogRecord("pysyncobj.serializer", logging.ERROR, __file__, 1, "failed to load full dump",
                                   (), sys.exc_info())
    log.take(record)
    [line] = log.lines
    assert line.error == "OSError: [Errno 28] No space left on device"
    assert str(line).endswith("failed to load full dump (OSError: [Errno 28] No space left on device)")


@pytest.mark.skipif("truncating already-applied" not in inspect.getsource(pysyncobj.syncobj),
                    reason="this pysyncobj release does not log the truncation of applied entries")
def test_a_critical_line_is_an_event_of_the_example_and_in_the_counterexample(tmp_path, monkeypatch):
    """The stale append_entries of tests/findings/test_reordered_append_entries.py, through the machine."""
    monkeypatch.setenv(STATS_ENV, str(tmp_path / "stats"))
    machine = UnreliableNetworkRules()
    machine.start_cluster(nodes=3, seed=0)
    c = machine.cluster
    try:
        leader = c.wait_leader()
        follower = [n for n in c.node_ids if n != leader][0]
        c.add_recv_filter(follower, ReorderFilter(1.0))
        for i in range(60):
            c.put("k", i, via=leader)
            c.run_for(0.05)
        assert c.pysyncobj_log.critical and all(line.node == follower for line in c.pysyncobj_log.critical)
        path = write_counterexample(str(tmp_path / "report"), machine, AssertionError("for the test"))
        stats.example_done(machine)
    finally:
        c.close()
    doc = json.loads(open(path).read())["pysyncobj_log"]
    assert doc["critical_total"] == len(doc["critical"]) == c.pysyncobj_log.critical_total
    assert doc["critical"][0]["node"] == follower and doc["critical"][0]["level"] == "CRITICAL"
    [summary] = [json.loads(line) for f in (tmp_path / "stats").iterdir() for line in f.read_text().splitlines()]
    event = "pysyncobj critical: truncating already-applied log entries from index"
    assert summary["events"][event] == c.pysyncobj_log.critical_total
