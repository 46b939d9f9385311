"""The sequential model on its own: plain tests that need neither a cluster nor the harness' plugin.

CI also runs this file with the plugin switched off (``-p no:raft_harness``), to show that a project with
raft-harness installed is unaffected where it does not use it.
"""
from harness.history import FAILED, OK, Operation
from replicated_bank import LedgerModel


def op(kind, value, result=None, outcome=OK):
    return Operation(id=0, kind=kind, key="main", value=value, via="n1", invoke=0.0, complete=1.0,
                     outcome=outcome, result=result)


def test_a_covered_transfer_moves_the_money():
    model = LedgerModel()
    ok, state = model.step(model.initial(), op("deposit", ("alice", 10), result=10))
    assert ok and state == (("alice", 10),)
    ok, state = model.step(state, op("transfer", ("alice", "bob", 4), result=True))
    assert ok and state == (("alice", 6), ("bob", 4))
    assert model.step(state, op("statement", None, result=(("alice", 6), ("bob", 4)))) == (True, state)


def test_results_the_model_cannot_give_are_impossible():
    model = LedgerModel()
    assert model.step(model.initial(), op("transfer", ("alice", "bob", 1), result=True))[0] is False
    assert model.step(model.initial(), op("statement", None, result=(("alice", 1),)))[0] is False
    # An operation without an ok outcome has no result to check.
    assert model.step(model.initial(), op("deposit", ("alice", 1), outcome=FAILED))[0] is True
