"""Raft safety of pysyncobj under generated faults.

Each channel model gets one machine per pytest-xdist worker ("shards",
:mod:`harness.fuzz.shards`), so ``pytest properties/ -n auto`` fuzzes every machine
on every core, each shard with its own seed, all filing failures under one key
of the shared example database; each is marked with its network, which
``--raft-network`` selects.  The nemesis machines (:mod:`harness.fuzz.faults`: per-link faults,
partition shapes, pauses, clock skew, leadership transfer, timed and local client operations) get
a share of the profile's examples so the bounded ``ci`` run stays short.
"""
from harness.fuzz.faults import NemesisRules
from harness.fuzz.shards import raft_machine_tests
from harness.fuzz.machine import RaftMachine, UnreliableNetworkRules


class FifoRaft(RaftMachine):
    """pysyncobj's actual contract: TCP-like links (ordered, lost only with the connection)."""

    network = "fifo"


class UnreliableRaft(UnreliableNetworkRules):
    """The Raft paper's network: loss, delay, reordering and duplication of single messages."""


class NemesisRaft(NemesisRules):
    """Jepsen's nemeses over TCP-like links: what pysyncobj's transport promises, faults on single
    links, shaped partitions, pauses, skewed clocks and leadership transfer."""

    network = "fifo"


class NemesisUnreliableRaft(NemesisRules, UnreliableNetworkRules):
    """The nemeses over the Raft paper's network, where a one-way cut stays one-way."""


class OldConnectionsRaft(NemesisRules):
    """The nemeses over TCP links whose closed connections stay readable: a peer's old connection,
    or its dead incarnation, may deliver after its new one (``old_connections_readable``)."""

    network = "fifo"
    cluster_options = {"old_connections_readable": True}


raft_machine_tests(FifoRaft)
raft_machine_tests(UnreliableRaft)
for _machine in (NemesisRaft, NemesisUnreliableRaft, OldConnectionsRaft):
    raft_machine_tests(_machine, share=0.5)
del _machine
