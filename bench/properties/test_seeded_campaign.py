"""A fuzzing campaign against a seeded bug, to measure how fast ``raft-harness fuzz`` finds it.

``RAFT_HARNESS_INJECT`` names the seeded bugs (``harness.adapter.patching.MUTATIONS``,
comma-separated) installed for every example, and ``RAFT_HARNESS_STREAM_CHECKS=0``
switches the machine back to the checker that only samples the nodes at the end
of each step, so the same campaign can be run with either checker::

    RAFT_HARNESS_INJECT=candidate_gives_vote RAFT_HARNESS_STREAM_CHECKS=0 \\
        raft-harness fuzz --properties bench/properties/test_seeded_campaign.py \\
        --known-fixes --budget 60s --workers 2 --seed 1

It lives below a ``properties/`` directory so that ``--known-fixes`` patches it
too, and outside ``properties/`` itself so that ordinary campaigns and CI never
run it.
"""
import os

import pytest

from harness.adapter.patching import inject
from harness.fuzz.machine import RaftMachine
from harness.fuzz.shards import shard_cases

INJECT = tuple(name for name in os.environ.get("RAFT_HARNESS_INJECT", "").split(",") if name)


class SeededCampaign(RaftMachine):
    """The fifo RaftMachine, with the checker chosen by RAFT_HARNESS_STREAM_CHECKS (default: the stream one)."""

    network = "fifo"
    stream_checks = os.environ.get("RAFT_HARNESS_STREAM_CHECKS", "1") != "0"


@pytest.fixture(autouse=True)
def _seeded_bug():
    if not INJECT:
        yield
        return
    with inject(*INJECT):
        yield


globals().update((name, pytest.mark.fifo(case)) for name, case in shard_cases(SeededCampaign))
