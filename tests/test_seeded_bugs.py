"""draft: machine classes only (measurement)"""
from __future__ import annotations

from harness.stateful import RaftMachine

try:
    from harness.stateful import UnreliableNetworkRules
except ImportError:  # older harness: the unreliable-only rules lived on RaftMachine
    UnreliableNetworkRules = RaftMachine


def _heal_and_settle(machine, seconds: float = 5.0) -> None:
    """Teardown without the liveness assertion: heal, restart every node, let the cluster run."""
    c = machine.cluster
    c.clear_all_filters()
    for node_id in c.node_ids:
        if not c.is_up(node_id):
            c.restart(node_id)
    c.run_for(seconds)


class SeededFifo(RaftMachine):
    """RaftMachine on the fifo network (pysyncobj's TCP contract), safety only, no forced snapshots."""

    network = "fifo"
    snapshot = None

    def _check_liveness(self) -> None:
        _heal_and_settle(self)


class SeededUnreliable(UnreliableNetworkRules):
    """RaftMachine on the unreliable network, safety only, without hold/release."""

    network = "unreliable"
    hold_messages = release_held = None

    def _check_liveness(self) -> None:
        _heal_and_settle(self)
