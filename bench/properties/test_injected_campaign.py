"""A fuzzing campaign against an injected bug, to measure how fast ``raft-harness fuzz`` finds it.

``RAFT_HARNESS_INJECT`` names the injected bugs (``harness.adapter.injected_bugs.INJECTED_BUGS``,
comma-separated; names of known fixes are accepted too) installed for every example,
``RAFT_HARNESS_STREAM_CHECKS=0`` switches the machine back to the checker that
only samples the nodes at the end of each step, so the same campaign can be run
with either checker, and ``RAFT_HARNESS_TARGETS`` picks the guidance measures
(``harness.fuzz.guidance``: names, ``all`` or ``none``) to compare campaigns with and without, and
``RAFT_HARNESS_CAMPAIGN_MACHINE`` the rules (``raft``: RaftMachine's, the default; ``nemesis``:
NemesisRules', which reach bugs the base rules cannot, such as finding 1's two membership changes)::

    RAFT_HARNESS_INJECT=candidate_gives_vote RAFT_HARNESS_STREAM_CHECKS=0 \\
        raft-harness fuzz --properties bench/properties/test_injected_campaign.py \\
        --known-fixes --budget 60s --workers 2 --seed 1

It lives below a ``properties/`` directory so that ``--known-fixes`` patches it
too, and outside ``properties/`` itself so that ordinary campaigns and CI never
run it.
"""
import os

import pytest

from harness.adapter.patching import inject
from harness.environment import CAMPAIGN_MACHINE_ENV, INJECT_ENV, STREAM_CHECKS_ENV, TARGETS_ENV
from harness.fuzz.faults import NemesisRules
from harness.fuzz.guidance import parse_targets
from harness.fuzz.machine import RaftMachine
from harness.fuzz.shards import shard_cases

INJECT = tuple(name for name in os.environ.get(INJECT_ENV, "").split(",") if name)
MACHINES = {"raft": RaftMachine, "nemesis": NemesisRules}
_MACHINE = os.environ.get(CAMPAIGN_MACHINE_ENV, "raft")
if _MACHINE not in MACHINES:
    raise ValueError(f"{CAMPAIGN_MACHINE_ENV} must be one of {', '.join(MACHINES)}, got {_MACHINE!r}")


class InjectedCampaign(MACHINES[_MACHINE]):
    """The fifo machine RAFT_HARNESS_CAMPAIGN_MACHINE names, with the checker chosen by
    RAFT_HARNESS_STREAM_CHECKS (default: the stream one) and the guidance by RAFT_HARNESS_TARGETS
    (default: RaftMachine's)."""

    network = "fifo"
    stream_checks = os.environ.get(STREAM_CHECKS_ENV, "1") != "0"
    guidance_targets = (parse_targets(os.environ[TARGETS_ENV]) if TARGETS_ENV in os.environ
                        else RaftMachine.guidance_targets)


@pytest.fixture(autouse=True)
def _injected_bug():
    if not INJECT:
        yield
        return
    with inject(*INJECT):
        yield


globals().update((name, pytest.mark.fifo(case)) for name, case in shard_cases(InjectedCampaign))
