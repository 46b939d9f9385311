"""Raft safety of pysyncobj under generated faults.

Each channel model gets one machine per pytest-xdist worker ("shards"), so
``pytest properties/ -n auto`` fuzzes every machine on every core, each shard
with its own seed and database key, all sharing one example database.
"""
import os

import pytest
from hypothesis import settings

from harness.stateful import RaftMachine, UnreliableNetworkRules

SHARDS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


class FifoRaft(RaftMachine):
    """pysyncobj's actual contract: TCP-like links (ordered, lost only with the connection)."""

    network = "fifo"


class UnreliableRaft(UnreliableNetworkRules):
    """The Raft paper's network: loss, delay, reordering and duplication of single messages."""


def _shards(machine, marker):
    per_shard = settings(max_examples=max(1, settings().max_examples // SHARDS))
    for shard in range(SHARDS):
        case = machine.TestCase
        name = f"Test{machine.__name__}Shard{shard}"
        cls = type(name, (case,), {"settings": per_shard, "__module__": __name__})
        yield name, marker(cls)


for _machine, _marker in ((FifoRaft, pytest.mark.fifo), (UnreliableRaft, pytest.mark.unreliable)):
    globals().update(_shards(_machine, _marker))
del _machine, _marker
