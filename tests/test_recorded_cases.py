"""Recorded state-machine runs (``tests/cases/*.json``) replayed as the fuzzer ran them, with the checker of today.

* ``false-positive-compacted-mirror``: the step-end checker reported
  ``state_machine_safety: index 4 committed as 4@2 on n3 but as 4@1 on n1``.
  It was the checker's mistake: n1, an isolated leader of term 1, held its
  own uncommitted 4@1..7@1 at commit 3; one append_entries after the heal
  replaced them by 4@2..8@2 and set commit 8, and the next step's forced
  snapshot compacted n1's log to 7..9 before the checker looked, so its copy
  of n1's log, unable to re-read 4..6, judged the stale 4@1 committed.  The
  stream checker judges each entry as the node's log held it when the commit
  index passed it, so the run passes.
* ``dump-write-failure-commits-stale-entry``: a real pysyncobj bug under
  investigation (a failed write of a received snapshot chunk, and the chunk's
  commit index applied to the node's own stale log).  It must keep failing,
  and the violation now names the message that broke it.

* ``nemesis-restart-forgets-uncommitted-membership``: the first nemesis campaign with every known
  fix (bench, seed 1932581445), NEW until explained: a restarted n1 becomes leader of term 29
  without the committed 59@5.  Its log held "add n7" past its stored commit index; restarted from
  its dump it counted 5 voters instead of 6 (the cluster had 7), and two stale nodes elected it.
  Finding 23: with its fix the recording passes, so triage names it.

* ``clients-*``: the first campaigns with the ``clients_answered`` check reported clients left
  waiting that pysyncobj had not lost; each was the harness' mistake, and each replays as passing
  (see the tests below).

All were recorded on pysyncobj 0.3.17 with the known fixes installed; other
releases run other code, so they are skipped there.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from harness.adapter.observe import VERSION
from harness.adapter.patching import inject
from harness.fuzz.replay import load_machine

CASES = Path(__file__).resolve().parent / "cases"


def _replay(case: str):
    doc = json.loads((CASES / f"{case}.json").read_text())
    if doc["pysyncobj_version"] != VERSION:
        pytest.skip(f"{case} was recorded on pysyncobj {doc['pysyncobj_version']}, this is {VERSION}")
    cls = load_machine(doc["machine"])
    assert cls is not None, doc["machine"]
    logging.disable(logging.CRITICAL)  # pysyncobj logs the injected I/O errors
    try:
        with inject(*doc["patches"]):
            return cls.replay(doc["steps"])
    finally:
        logging.disable(logging.NOTSET)


def _triage(case: str):
    """The triage verdict of a recording (its recorded patches installed), as a campaign would give it."""
    from harness.ledger.triage import triage

    doc = json.loads((CASES / f"{case}.json").read_text())
    if doc["pysyncobj_version"] != VERSION:
        pytest.skip(f"{case} was recorded on pysyncobj {doc['pysyncobj_version']}, this is {VERSION}")
    logging.disable(logging.CRITICAL)
    try:
        return triage(load_machine(doc["machine"]), doc["steps"], doc["patches"], ["state_machine_safety"])
    finally:
        logging.disable(logging.NOTSET)


def test_the_compacted_mirror_false_positive_replays_as_passing():
    run = _replay("false-positive-compacted-mirror")
    assert not run.failed, run.headline
    assert len(run.digests) == 16  # 15 steps and the teardown: the whole recording ran


def test_the_dump_write_failure_still_breaks_state_machine_safety_at_the_snapshot_chunk():
    run = _replay("dump-write-failure-commits-stale-entry")
    assert run.failed, "the recorded pysyncobj bug no longer shows"
    violations = run.error.violations
    assert "state_machine_safety" in {v.invariant for v in violations}
    first = violations[0]
    assert (first.invariant, first.node) == ("state_machine_safety", "n2"), first
    assert first.at is not None and first.handling.startswith("snapshot #"), first
    assert "committed as 4@2" in first.message and "but as 4@1 on n2" in first.message


def test_triage_names_the_dump_write_recording_finding_16():
    """The recording was NEW until the data-less snapshot message had a ledger entry and a fix."""
    assert _triage("dump-write-failure-commits-stale-entry").label == "known: finding 16"


def test_a_paused_node_resuming_after_a_peer_was_forgotten_is_not_a_harness_error():
    """Found by a 20-minute NemesisRaft campaign: a node paused while a peer was removed resumed and
    handled its deferred disconnect news about that peer, which the network had forgotten: KeyError
    inside the harness (a harness bug, never pysyncobj's).  The news is dropped now."""
    run = _replay("nemesis-paused-node-hears-of-a-forgotten-peer")
    assert not run.failed, run.headline


def test_an_old_connection_s_stale_append_entries_on_fifo_is_finding_2():
    """Found by a 20-minute campaign (OldConnectionsRaft, fixes 3 and 12 in): a peer's old TCP connection,
    still readable after its new one, delivers a stale append_entries that truncates committed entries.
    Finding 2 was thought to need a reordering network; pysyncobj's own transport reorders this way."""
    run = _replay("old-connection-truncates-committed-entries")
    assert run.failed and "state_machine_safety" in run.invariants, run.headline
    assert _triage("old-connection-truncates-committed-entries").label == "known: finding 2"


def test_the_nemesis_recording_still_fails_and_triage_names_finding_23():
    """Recorded with the eleven fixes of its day: it fails with them, and passes with finding 23's too."""
    run = _replay("nemesis-restart-forgets-uncommitted-membership")
    assert run.failed and "leader_completeness" in run.invariants, run.headline
    assert "n1 became leader of term 29 without entry 59@5" in str(run.error)
    assert _triage("nemesis-restart-forgets-uncommitted-membership").label == "known: finding 23"


@pytest.mark.parametrize("case", [
    # A removed node's clients: the harness stopped the node and left them pending (now unknown).
    "clients-of-a-removed-node",
    # A deposed leader cut off from the new one holds its clients until its leaderFallbackTimeout
    # (30 s); the first wait was 20 s.  It is now 60 s, and a node that does not follow the leader is
    # not judged.
    "clients-zombie-leader-within-fallback-timeout",
    # A command waits at an index the new leader's log reaches only after more writes than one a second.
    "clients-beyond-one-write-a-second",
    # A read-only node that knows none of the voters added since it started never catches up.
    "clients-of-a-stranded-read-only-node",
])
def test_clients_the_harness_wrongly_called_unanswered_replay_as_passing(case):
    run = _replay(case)
    assert not run.failed, run.headline
