"""Raft safety of pysyncobj under generated faults.

Each channel model gets one machine per pytest-xdist worker ("shards",
:mod:`harness.fuzz.shards`), so ``pytest properties/ -n auto`` fuzzes every machine
on every core, each shard with its own seed, all filing failures under one key
of the shared example database; each is marked with its network, which
``--raft-network`` selects.
"""
from harness.fuzz.shards import raft_machine_tests
from harness.fuzz.machine import RaftMachine, UnreliableNetworkRules


class FifoRaft(RaftMachine):
    """pysyncobj's actual contract: TCP-like links (ordered, lost only with the connection)."""

    network = "fifo"


class UnreliableRaft(UnreliableNetworkRules):
    """The Raft paper's network: loss, delay, reordering and duplication of single messages."""


raft_machine_tests(FifoRaft)
raft_machine_tests(UnreliableRaft)
