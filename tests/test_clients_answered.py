"""The ``clients_answered`` liveness check: every client of a node that stays up gets an answer.

The checker on hand-built histories (it fails on a waiting operation, and only then), the machine's
teardown that runs it (finding 22's steps fail there, and pass with its fix, which triage then names),
and the harness' own part: a node the harness stops leaves no client waiting.
"""
from __future__ import annotations

from harness import Cluster, MessageTypeFilter
from harness.adapter.patching import inject
from harness.check.answers import clients_answered, follower_clients_answered
from harness.fuzz.machine import RaftMachine
from harness.history import FAILED, OK, PENDING, UNKNOWN, History
from harness.ledger.triage import triage

#: The fixes of findings 3 and 16, without which finding 22's steps break safety first.
ON_THE_WAY = ("snapshot_chunk_commit", "snapshot_offer_commit")

#: Finding 22 as machine steps: n3 leads, is isolated with a write of its own, and comes back to a
#: leader (n2) that compacted past it; its write is never answered.
STEPS = ([dict(rule="start_cluster", args=dict(nodes=3, seed=0)), dict(rule="wait", args=dict(seconds=2.0)),
          dict(rule="isolate", args=dict(node="n3")), dict(rule="write", args=dict(key="a", via="n3")),
          dict(rule="wait", args=dict(seconds=8.0))]
         + [dict(rule="write", args=dict(key="b", via="leader"))] * 3
         + [dict(rule="snapshot", args=dict(node="n2")), dict(rule="heal", args={})])


def _history(*outcomes):
    h = History()
    for i, outcome in enumerate(outcomes):
        op = h.invoke("write", "k", i, f"n{i + 1}", float(i))
        if outcome != PENDING:
            h.finish(op, outcome, None, float(i) + 0.5)
    return h


def test_a_waiting_operation_is_a_violation_that_names_it_and_its_node():
    (v,) = clients_answered(_history(OK, PENDING, FAILED, PENDING), 60.0)
    assert v.invariant == "clients_answered"
    assert v.nodes == ("n2", "n4")
    assert "2 client operation(s) still unanswered 60 virtual seconds" in v.message and "follow the leader" in v.message
    assert "#1 write('k', 1) via n2" in v.message and "#3 write('k', 3) via n4" in v.message


def test_on_real_sockets_the_wait_is_said_in_wall_seconds():
    (v,) = clients_answered(_history(PENDING), 40.0, clock="wall")
    assert "1 client operation(s) still unanswered 40 wall seconds" in v.message


def test_only_the_clients_of_nodes_that_follow_the_leader_are_judged():
    """n1 and n2 are up and applied index 5 (the leader's commit index when the wait began): their waiting
    clients are violations; n3 is up but stuck at 3, n4 is down: theirs are not judged."""
    import dataclasses

    from harness.state import NodeState

    base = NodeState(id="n1", incarnation=1, up=True, voter=True, role="follower", term=2, voted_for=None,
                     leader="n2", commit_index=5, last_applied=5, first_index=1, last_index=5, last_term=2)
    states = [base, dataclasses.replace(base, id="n2", role="leader"),
              dataclasses.replace(base, id="n3", commit_index=3, last_applied=3),
              dataclasses.replace(base, id="n4", up=False)]
    (v,) = follower_clients_answered(states, _history(PENDING, PENDING, PENDING, PENDING), 5, 60.0)
    assert v.nodes == ("n1", "n2") and v.message.startswith("2 client operation(s)")
    assert follower_clients_answered(states[2:], _history(PENDING, PENDING, PENDING, PENDING), 5, 60.0) == []


def test_answered_failed_and_unknown_operations_are_not_waiting():
    assert clients_answered(_history(OK, FAILED, UNKNOWN), 60.0) == []
    assert clients_answered(History(), 0.0) == []


def test_a_long_list_of_waiting_operations_is_cut_but_counted():
    (v,) = clients_answered(_history(*[PENDING] * 8), 60.0)
    assert v.message.startswith("8 client operation(s)") and v.message.endswith("; …")
    assert "#4 write" in v.message and "#5 write" not in v.message


def test_the_machine_fails_a_write_a_snapshot_covered_and_passes_with_the_fix():
    with inject(*ON_THE_WAY):
        failed = RaftMachine.replay(STEPS)
    assert list(failed.invariants) == ["clients_answered"]
    assert "via n3" in str(failed.error)
    with inject(*ON_THE_WAY, "command_under_snapshot_answered"):
        assert RaftMachine.replay(STEPS).error is None


def test_triage_names_finding_22():
    verdict = triage(RaftMachine, STEPS, patches=ON_THE_WAY, invariants=("clients_answered",))
    assert verdict.label == "known: finding 22" and verdict.known == (22,)


def test_a_removed_node_leaves_its_clients_with_an_unknown_outcome():
    with Cluster(5, seed=3) as c:
        leader = c.wait_leader()
        c.must_put("k", 0)
        follower = next(n for n in c.node_ids if n != leader)
        c.add_send_filter(follower, MessageTypeFilter(["apply_command"]))  # its forwarded write goes nowhere
        op = c.put("k", 1, via=follower)
        c.run_for(0.5)
        assert op.outcome == PENDING
        change = c.remove_node(follower)
        assert c.run_until(lambda: change.outcome == OK, timeout=10)
        assert follower not in c.node_ids
        assert (op.outcome, op.reason) == (UNKNOWN, "PROPOSER_REMOVED")
