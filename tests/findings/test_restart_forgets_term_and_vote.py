"""Finding (0.3.11 – 0.3.15): a restarted node forgets its term and vote, and a committed entry is replaced.

Before 0.3.16 the journal stores neither ``currentTerm`` nor ``votedFor``; a
node restarts at term 0 with no vote.  Found by ``FifoRaft`` on 0.3.11 and
shrunk to the steps below: a 5-node cluster (3 started, 2 added) loses three
nodes to crashes, they restart, and index 4, committed in term 2, is committed
again as a different entry in term 4 — on the same node.  The steps replay the
shrunk counterexample through the state machine (its background writes
included); on 0.3.16+ they must pass.  See FINDINGS.md.
"""
import pytest

from harness.compat import VERSION_INFO
from harness.invariants import SafetyViolation
from harness.stateful import RaftMachine


class FifoRaft(RaftMachine):
    network = "fifo"


@pytest.mark.xfail(VERSION_INFO < (0, 3, 16), strict=True, raises=SafetyViolation,
                   reason="pysyncobj < 0.3.16 does not persist currentTerm and votedFor")
def test_committed_entry_survives_crashing_a_majority():
    state = FifoRaft()
    try:
        state.start_cluster(nodes=3, seed=0)
        state.raft_safety()
        for step in ("add_node",) * 5 + ("crash:n3",) + ("add_node",) * 3 + ("crash:n2", "crash:n1"):
            if step == "add_node":
                state.add_node()
            else:
                state.crash(node=step.split(":")[1])
            state.raft_safety()
    finally:
        state.teardown()  # heals, restarts every node, checks liveness, safety and linearizability
