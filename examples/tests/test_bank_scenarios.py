"""Scripted scenarios on a simulated cluster of banks, with raft-harness' ``cluster`` fixture.

Each test gets clusters from the fixture (seeded from the test's id, so every run is the same), drives
them step by step and checks the outcome; a failing test shows every node's state, the last messages
and pysyncobj's own log in its report.
"""
from harness.check.linearizability import check_linearizable
from harness.history import OK
from replicated_bank import Bank, LedgerModel


def test_a_transfer_through_the_majority_survives_the_old_leader(cluster):
    c = cluster(nodes=3, node_class=Bank)
    old = c.wait_leader()
    c.must_call("deposit", "main", "alice", 100)
    c.isolate_node(old)
    assert c.run_until(lambda: c.leader() not in (None, old), timeout=10)
    assert c.must_call("transfer", "main", "alice", "bob", 30).result is True
    stale = c.call("transfer", "main", "alice", "carol", 100, via=old)  # the cut-off leader cannot commit it
    c.run_for(2)
    c.heal()
    c.run_for(3)
    assert stale.outcome != OK
    assert c.must_call("statement", "main").result == (("alice", 70), ("bob", 30))
    for node in c.node_ids:
        assert c.node(node).audit("main") == (100, 100, 30)
    assert check_linearizable(c.history, model=LedgerModel())


def test_a_transfer_the_source_cannot_cover_moves_nothing(cluster):
    c = cluster(nodes=1, node_class=Bank)
    c.wait_leader()
    c.must_call("deposit", "main", "alice", 5)
    assert c.must_call("transfer", "main", "alice", "bob", 6).result is False
    assert c.must_call("statement", "main").result == (("alice", 5),)
