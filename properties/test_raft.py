"""Raft safety of pysyncobj under generated faults.

Each channel model gets one machine per pytest-xdist worker ("shards",
:mod:`harness.fuzz.shards`), so ``pytest properties/ -n auto`` fuzzes every machine
on every core, each shard with its own seed, all filing failures under one key
of the shared example database.
"""
import pytest

from harness.fuzz.shards import shard_cases
from harness.fuzz.machine import RaftMachine, UnreliableNetworkRules


class FifoRaft(RaftMachine):
    """pysyncobj's actual contract: TCP-like links (ordered, lost only with the connection)."""

    network = "fifo"


class UnreliableRaft(UnreliableNetworkRules):
    """The Raft paper's network: loss, delay, reordering and duplication of single messages."""


for _machine, _marker in ((FifoRaft, pytest.mark.fifo), (UnreliableRaft, pytest.mark.unreliable)):
    globals().update((name, _marker(case)) for name, case in shard_cases(_machine))
del _machine, _marker
