"""The battery support: models and the lock checker on hand-built histories, batteries in a simulated
cluster (deterministic, virtual time, no thread), the ready-made machines, and bad input."""
from __future__ import annotations

import dataclasses
import threading
import time

import pysyncobj.batteries as pysyncobj_batteries
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from pysyncobj import SyncObj
from pysyncobj.batteries import (ReplCounter, ReplDict, ReplList, ReplLockManager, ReplPriorityQueue, ReplQueue,
                                 ReplSet)

from harness import Cluster, KVStore, SafetyViolation
from harness.adapter import batteries as adapter
from harness.check.batteries import (CounterModel, DictModel, ListModel, PriorityQueueModel, QueueModel, SetModel,
                                     check_battery, model_for)
from harness.check.invariants import LivenessViolation, Violation
from harness.check.locks import LockSample, LockTransition, lock_violations
from harness.contract import NodeError
from harness.fuzz.batteries import ALIASES, MACHINES, BatteryFinding, battery_machine, recognise_finding
from harness.history import FAILED, OK, PENDING, UNKNOWN, Operation


def ops(*rows):
    """Operations on key "x" from ``(kind, args, invoke, complete, outcome, result[, index, via])`` rows."""
    out = []
    for i, row in enumerate(rows):
        kind, args, invoke, complete, outcome, result, *rest = row
        index = rest[0] if rest else None
        via = rest[1] if len(rest) > 1 else "n1"
        out.append(Operation(id=i, kind=kind, key="x", value=tuple(args), via=via, invoke=invoke,
                             complete=None if outcome in (UNKNOWN, PENDING) else complete, outcome=outcome,
                             result=result, index=index))
    return out


def linearizable(model, *rows) -> bool:
    return check_battery(ops(*rows), {"x": model}).ok


# --- models -------------------------------------------------------------------------------------
def test_counter_model_accepts_concurrent_adds_in_either_order_and_rejects_a_wrong_total():
    assert linearizable(CounterModel(), ("add", (5,), 0, 2, OK, 6), ("inc", (), 1, 3, OK, 1))
    assert not linearizable(CounterModel(), ("add", (5,), 0, 1, OK, 5), ("add", (1,), 2, 3, OK, 7))
    assert linearizable(CounterModel(), ("set", (7,), 0, 1, OK, 7), ("sub", (3,), 2, 3, OK, 4),
                        ("add", (0,), 4, 5, OK, 4))


def test_a_timed_out_call_is_placed_where_the_log_has_room_for_it():
    """The log order proves this history linearizable without a search (``max_states=1`` would stop one):
    the clear that timed out can only have taken the missing index 2.  Slipped in just before the call it
    explains (``setdefault`` answering 5), it would also wipe ``a``, which the last read still sees."""
    rows = [("set", ("b", 3), 0, 1, OK, None, 1),
            ("clear", (), 0.5, None, PENDING, None),
            ("set", ("a", 4), 1, 2, OK, None, 3),
            ("setdefault", ("b", 5), 1, 3, OK, 5, 4),
            ("local_rawData", (), 3.5, 4, OK, {"a": 4, "b": 5}, 4)]
    assert check_battery(ops(*rows), {"x": DictModel()}, max_states=1).ok
    with pytest.raises(RuntimeError, match="too large"):  # the same history with no index known
        check_battery([dataclasses.replace(op, index=None) if op.kind != "local_rawData" else op
                       for op in ops(*rows)], {"x": DictModel()}, max_states=1)


def test_counter_model_lets_an_unknown_call_take_effect_or_not():
    assert linearizable(CounterModel(), ("add", (10,), 0, 0, UNKNOWN, None), ("add", (0,), 5, 6, OK, 10))
    assert linearizable(CounterModel(), ("add", (10,), 0, 0, PENDING, None), ("add", (0,), 5, 6, OK, 0))
    assert not linearizable(CounterModel(), ("add", (10,), 0, 0, UNKNOWN, None), ("add", (0,), 5, 6, OK, 3))
    assert linearizable(CounterModel(), ("add", (10,), 0, 1, FAILED, None), ("add", (0,), 5, 6, OK, 0))


def test_many_identical_pending_calls_do_not_blow_up_the_search():
    rows = [("add", (1,), 1 + i, 0, PENDING, None) for i in range(40)]
    rows += [("add", (0,), 50, 51, OK, 2), ("add", (0,), 52, 53, OK, 3)]
    assert linearizable(CounterModel(), *rows)
    assert not linearizable(CounterModel(), *rows, ("add", (0,), 54, 55, OK, 1))


def test_a_stale_local_read_passes_but_not_one_older_than_what_its_replica_had_applied():
    write_1 = ("add", (1,), 0, 1, OK, 1, 3)  # applied at log index 3
    write_2 = ("add", (1,), 2, 3, OK, 2, 5)  # applied at log index 5
    assert linearizable(CounterModel(), write_1, write_2, ("local_get", (), 10, 10, OK, 1, 4, "n2"))
    assert not linearizable(CounterModel(), write_1, write_2, ("local_get", (), 10, 10, OK, 0, 5, "n2"))
    assert not linearizable(CounterModel(), write_1, write_2, ("local_get", (), 10, 10, OK, 7, 4, "n2"))


def test_check_battery_names_the_object_and_flags_local_reads():
    history = ops(("add", (1,), 0, 1, OK, 1, 3), ("local_get", (), 5, 5, OK, 9, 3))
    result = check_battery(history, {"x": CounterModel()})
    assert not result and result.key == "x" and "local_*" in result.explanation
    assert check_battery(history, {"other": CounterModel()}).ok  # operations on other keys are not its business


def test_dict_model():
    assert linearizable(DictModel(), ("set", ("a", 1), 0, 1, OK, None), ("setdefault", ("a", 2), 2, 3, OK, 1),
                        ("pop", ("a",), 4, 5, OK, 1), ("pop", ("a",), 6, 7, OK, None),
                        ("update", ({"b": 3},), 8, 9, OK, None), ("local_rawData", (), 10, 10, OK, {"b": 3}, None))
    assert not linearizable(DictModel(), ("set", ("a", 1), 0, 1, OK, None), ("pop", ("a",), 2, 3, OK, 1),
                            ("pop", ("a",), 4, 5, OK, 1))
    cleared = [("reset", ({"a": 1},), 0, 1, OK, None, 1), ("clear", (), 2, 3, OK, None, 2),
               ("pop", ("z",), 4, 5, OK, None, 3)]
    assert linearizable(DictModel(), *cleared, ("local_len", (), 6, 6, OK, 0, 9))
    assert not linearizable(DictModel(), *cleared, ("local_len", (), 6, 6, OK, 1, 9))


def test_list_model_follows_a_python_list_and_a_raising_call_never_completes():
    assert linearizable(ListModel(), ("append", (1,), 0, 1, OK, None), ("insert", (0, 2), 2, 3, OK, None),
                        ("pop", (0,), 4, 5, OK, 2), ("extend", ([3, 4],), 6, 7, OK, None),
                        ("sort", (True,), 8, 9, OK, None), ("local_rawData", (), 10, 10, OK, [4, 3, 1], 99))
    assert linearizable(ListModel(), ("remove", (5,), 0, 0, PENDING, None), ("local_len", (), 1, 1, OK, 0, 99))
    assert not linearizable(ListModel(), ("remove", (5,), 0, 1, OK, None))  # remove of a missing item raises
    assert not linearizable(ListModel(), ("append", (1,), 0, 1, OK, None), ("pop", (), 2, 3, OK, 2))


def test_set_model_pop_takes_any_element_and_an_unknown_pop_any_or_none():
    base = [("add", (1,), 0, 1, OK, None, 1), ("add", (2,), 0, 1, OK, None, 2), ("discard", (9,), 2, 3, OK, None, 3)]
    assert linearizable(SetModel(), *base, ("pop", (), 2, 3, OK, 2), ("local_contains", (1,), 4, 4, OK, True, 9))
    assert not linearizable(SetModel(), *base, ("pop", (), 2, 3, OK, 3))
    assert linearizable(SetModel(), *base, ("pop", (), 2, 0, UNKNOWN, None), ("local_len", (), 4, 4, OK, 1, 9))
    assert linearizable(SetModel(), *base, ("pop", (), 2, 0, UNKNOWN, None), ("local_len", (), 4, 4, OK, 2, 9))
    assert not linearizable(SetModel(), *base, ("pop", (), 2, 0, UNKNOWN, None),
                            ("local_len", (), 4, 4, OK, 0, 9))
    assert not linearizable(SetModel(), ("remove", (1,), 0, 1, OK, None))


def test_queue_models_respect_maxsize_and_order():
    assert linearizable(QueueModel(1), ("put", (1,), 0, 1, OK, True), ("put", (2,), 2, 3, OK, False),
                        ("local_full", (), 4, 4, OK, True, 9), ("get", (), 5, 6, OK, 1), ("get", (-1,), 7, 8, OK, -1))
    assert not linearizable(QueueModel(1), ("put", (1,), 0, 1, OK, True), ("put", (2,), 2, 3, OK, True))
    assert not linearizable(QueueModel(), ("put", (1,), 0, 1, OK, True), ("put", (2,), 2, 3, OK, True),
                            ("get", (), 4, 5, OK, 2))
    assert linearizable(PriorityQueueModel(), ("put", (3,), 0, 1, OK, True), ("put", (1,), 2, 3, OK, True),
                        ("get", (), 4, 5, OK, 1), ("local_qsize", (), 6, 6, OK, 1, 9))
    assert not linearizable(PriorityQueueModel(), ("put", (3,), 0, 1, OK, True), ("put", (1,), 2, 3, OK, True),
                            ("get", (), 4, 5, OK, 3))


def test_models_reject_bad_input():
    with pytest.raises(ValueError, match="has no operation 'frobnicate'"):
        linearizable(CounterModel(), ("frobnicate", (), 0, 1, OK, None))
    with pytest.raises(ValueError, match="battery must be one of"):
        model_for("ReplFoo")
    with pytest.raises(ValueError, match="maxsize applies to ReplQueue and ReplPriorityQueue only"):
        model_for("ReplCounter", maxsize=3)
    with pytest.raises(ValueError, match="maxsize must be an int >= 0"):
        QueueModel(-1)
    assert isinstance(model_for("ReplQueue", maxsize=2), QueueModel)


# --- the lock checker ---------------------------------------------------------------------------
U = 2.0  # autoUnlockTime of the hand-built histories


def lock_ops(*rows):
    """tryAcquire/release operations on lock "L": ``(kind, client, invoke, complete, outcome, result)``."""
    return [Operation(id=i, kind=kind, key="L", value=("L",), via=client, invoke=invoke,
                      complete=None if outcome in (UNKNOWN, PENDING) else complete, outcome=outcome, result=result)
            for i, (kind, client, invoke, complete, outcome, result) in enumerate(rows)]


def kinds(violations):
    return sorted({v.invariant for v in violations})


def test_two_grants_inside_one_lease_break_mutual_exclusion():
    history = lock_ops(("tryAcquire", "a", 0.0, 0.1, OK, True), ("tryAcquire", "b", 1.0, 1.1, OK, True))
    assert kinds(lock_violations(history, [], [], U)) == ["lock_mutual_exclusion"]


def test_a_grant_after_expiry_or_release_is_fine():
    expired = lock_ops(("tryAcquire", "a", 0.0, 0.1, OK, True), ("tryAcquire", "b", 2.5, 2.6, OK, True))
    released = lock_ops(("tryAcquire", "a", 0.0, 0.1, OK, True), ("release", "a", 0.5, 0.6, OK, None),
                        ("tryAcquire", "b", 1.0, 1.1, OK, True))
    refused = lock_ops(("tryAcquire", "a", 0.0, 0.1, OK, True), ("tryAcquire", "b", 1.0, 1.1, OK, False))
    for history in (expired, released, refused):
        assert lock_violations(history, [], [], U) == []


def test_a_release_in_flight_with_the_grant_voids_it():
    history = lock_ops(("tryAcquire", "a", 0.0, 0.3, OK, True), ("release", "a", 0.1, 0.2, OK, None),
                       ("tryAcquire", "b", 1.0, 1.1, OK, True))
    assert lock_violations(history, [], [], U) == []


def test_an_is_acquired_sample_is_a_holding_unless_the_client_let_go():
    history = lock_ops(("tryAcquire", "b", 1.0, 1.1, OK, True))
    sample = LockSample(1.5, "a", "L", True, "a")
    assert "lock_mutual_exclusion" in kinds(lock_violations(history, [sample], [], U))
    let_go = lock_ops(("tryAcquire", "a", 0.0, 0.1, OK, True), ("release", "a", 0.5, 0.6, OK, None),
                      ("tryAcquire", "b", 1.0, 1.1, OK, True))
    assert lock_violations(let_go, [LockSample(1.5, "a", "L", True, "b")], [], U) == []  # a stale local read
    assert lock_violations(history, [LockSample(1.5, "b", "L", True, "b")], [], U) == []


def transition(command, client, stamp, before, after, index=5):
    return LockTransition("n1", 1, 9.0, index, command, client, stamp, "L", before, after)


def test_handover_only_by_release_or_expiry():
    fine = [transition("acquire", "b", 3.0, ("a", 0.5), ("b", 3.0)),  # 2.5 s after a's stamp
            transition("release", "b", None, ("b", 3.0), None, 6),
            transition("acquire", "a", 3.5, None, ("a", 3.5), 7),
            transition("prolongate", "a", 4.0, ("a", 3.5), ("a", 4.0), 8),
            transition("prolongate", "c", 6.5, ("a", 4.0), None, 9)]  # dropped after expiry
    assert lock_violations([], [], fine, U) == []
    early = [transition("acquire", "b", 1.0, ("a", 0.5), ("b", 1.0))]
    foreign_release = [transition("release", "b", None, ("a", 0.5), None)]
    early_drop = [transition("prolongate", "c", 1.0, ("a", 0.5), None)]
    for bad in (early, foreign_release, early_drop):
        assert kinds(lock_violations([], [], bad, U)) == ["lock_handover"]


def test_handover_counts_from_the_holders_latest_stamp_even_if_a_later_command_moved_it_back():
    moved_back = [transition("prolongate", "a", 5.0, ("a", 1.0), ("a", 5.0), 5),
                  transition("acquire", "a", 2.0, ("a", 5.0), ("a", 2.0), 6),  # an older command applied later
                  transition("acquire", "b", 4.5, ("a", 2.0), ("b", 4.5), 7)]  # expired by the stamp it saw
    assert kinds(lock_violations([], [], moved_back, U)) == ["lock_handover"]


def test_is_acquired_must_agree_with_the_most_advanced_replica():
    assert kinds(lock_violations([], [LockSample(1.0, "a", "L", True, "b")], [], U)) == ["lock_agreement"]
    assert kinds(lock_violations([], [LockSample(1.0, "a", "L", True, None)], [], U)) == ["lock_agreement"]
    assert lock_violations([], [LockSample(1.0, "a", "L", True, "a")], [], U) == []
    with pytest.raises(ValueError, match="auto_unlock_time must be > 0"):
        lock_violations([], [], [], 0)


# --- batteries in a simulated cluster ---------------------------------------------------------------
def every_battery(node_id: str):
    return {"counter": ReplCounter(), "dict": ReplDict(), "list": ReplList(), "set": ReplSet(),
            "queue": ReplQueue(maxsize=2), "pq": ReplPriorityQueue(), "locks": ReplLockManager(2.0, selfID=node_id)}


def scenario(seed: int):
    """Every battery used through the log and locally, with a crash; the run's digest and history."""
    with Cluster(3, seed=seed, consumers=every_battery) as c:
        c.wait_leader()
        results = [c.must_call(m, name, *args, consumer=name).result for m, name, args in (
            ("add", "counter", (5,)), ("set", "dict", ("a", 1)), ("append", "list", (1,)), ("add", "set", (2,)),
            ("put", "queue", (1,)), ("put", "pq", (3,)), ("tryAcquire", "locks", ("L",)))]
        holder = c.leader()
        follower = [n for n in c.node_ids if n != holder][0]
        c.run_for(1)
        results += [c.local_call(m, name, *args, via=follower, consumer=name).result for m, name, args in (
            ("get", "counter", ()), ("get", "dict", ("a",)), ("rawData", "list", ()), ("__len__", "set", ()),
            ("qsize", "queue", ()), ("qsize", "pq", ()))]
        results.append(c.local_call("isAcquired", "L", "L", via=holder, consumer="locks").result)
        c.crash(holder)
        c.run_for(5)  # the holder's lease runs out: nobody prolongs it any more
        new_leader = c.wait_leader()
        results.append(c.must_call("tryAcquire", "L", "L", consumer="locks").result)
        results.append(c.local_call("isAcquired", "L", "L", via=new_leader, consumer="locks").result)
        return c.trace_digest(), results, list(c.consumers.lock_transitions), list(c.history)


def test_every_battery_works_in_simulation_and_a_seed_replays_exactly():
    threads = threading.active_count()
    digest, results, transitions, history = scenario(3)
    assert results == [5, None, None, None, True, True, True, 5, 1, [1], 1, 1, 1, True, True, True]
    assert (digest, results, transitions) == scenario(3)[:3]
    assert scenario(4)[0] != digest
    assert threading.active_count() == threads  # no thread was started
    assert lock_violations(history, [], transitions, 2.0) == []


def test_lock_prolongation_runs_on_virtual_time_and_stops_with_its_node():
    with Cluster(3, seed=1, consumers=lambda node: [ReplLockManager(2.0, selfID=node)]) as c:
        c.wait_leader()
        acquired = c.call("tryAcquire", "L", "L", via="n2", consumer="ReplLockManager")
        c.run_for(3)
        assert acquired.result is True
        stamps = sorted({t.stamp for t in c.consumers.lock_transitions if t.command == "prolongate"})
        assert len(stamps) >= 4 and all(0.45 < b - a < 0.65 for a, b in zip(stamps, stamps[1:]))  # every 2.0 / 4
        assert stamps[-1] < c.now  # stamps are virtual seconds, not the wall clock
        c.crash("n2")
        c.run_for(3)
        last = [t for t in c.consumers.lock_transitions if t.lock == "L"][-1]
        assert last.command == "prolongate" and last.client != "n2" and last.after is None  # expired
        assert not any(c.local_call("isAcquired", "L", "L", via=n, consumer="ReplLockManager").result
                       for n in c.up_ids())


def test_the_battery_module_gets_its_own_time_and_threading_back():
    with Cluster(1, seed=0, consumers=lambda node: [ReplCounter()]):
        with Cluster(1, seed=1, consumers=lambda node: [ReplCounter()]):
            assert adapter.patched()
        assert pysyncobj_batteries.time is not time
    assert pysyncobj_batteries.time is time and pysyncobj_batteries.threading is threading
    assert not adapter.patched()


def test_a_restarted_node_gets_fresh_consumers():
    with Cluster(3, seed=2, consumers=lambda node: {"counter": ReplCounter()}) as c:
        c.wait_leader()
        c.must_call("add", "counter", 4, consumer="counter")
        c.run_for(1)
        before = c.consumer("n1", "counter")
        c.crash("n1")
        assert c.consumer("n1", "counter") is None
        c.restart("n1")
        c.run_for(2)
        assert c.consumer("n1", "counter") is not before and c.consumer("n1", "counter").get() == 4


# --- machines ---------------------------------------------------------------------------------------
_QUICK = settings(max_examples=3, stateful_step_count=15, derandomize=True, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("battery", sorted(MACHINES))
def test_one_line_makes_a_machine_for_every_battery(battery):
    class Mine(battery_machine(battery, guarded=True)):
        pass

    run_state_machine_as_test(Mine, settings=_QUICK)


def test_battery_machine_takes_short_names_and_returns_one_class_per_configuration():
    assert battery_machine("counter") is battery_machine("ReplCounter")
    assert battery_machine("counter") is not battery_machine("counter", guarded=True)
    assert set(ALIASES.values()) == set(MACHINES)
    unreliable = battery_machine("locks", network="unreliable")
    assert unreliable.network == "unreliable" and hasattr(unreliable, "reorder_messages")


def test_a_counterexample_names_a_battery_machine_that_replay_can_import():
    """``battery_machine`` makes its classes on demand; the module resolves their names the same way."""
    from harness.fuzz import batteries
    from harness.fuzz.replay import load_machine

    made = battery_machine("ReplCounter", network="unreliable")
    assert f"{made.__module__}.{made.__qualname__}" == "harness.fuzz.batteries.ReplCounterUnreliableRaft"
    assert load_machine("harness.fuzz.batteries.ReplCounterUnreliableRaft") is made
    assert batteries.ReplSetGuardedRaft is battery_machine("set", guarded=True)
    with pytest.raises(AttributeError, match="ReplFooRaft"):
        batteries.ReplFooRaft


# --- recognising findings 17 and 18 in the unguarded machines ----------------------------------------
def _node_error(innermost: str, function: str = "remove", applying: bool = True) -> NodeError:
    outer = ('  File "/x/pysyncobj/syncobj.py", line 718, in __applyLogEntries\n    res = self.__doApplyCommand(e)\n'
             '  File "/x/pysyncobj/syncobj.py", line 907, in __doApplyCommand\n    return m(*args)\n') if applying else ""
    return NodeError(node="n2", incarnation=1, activity="tick", time=2.0, traceback=(
        'Traceback (most recent call last):\n'
        '  File "/x/pysyncobj/syncobj.py", line 1, in _onTick\n    self.__applyLogEntries()\n' + outer +
        f'  File "/x/{innermost}", line 9, in {function}\n    self.__data.remove(value)\n'
        'KeyError: 3\n'))


def _set_op(kind: str, outcome: str = OK) -> Operation:
    return Operation(id=0, kind=kind, key="set", value=(), via="n1", invoke=0.0, complete=1.0, outcome=outcome)


def test_an_exception_raised_in_a_battery_method_is_recognised_as_finding_17():
    raised = _node_error("pysyncobj/batteries.py")
    failure = SafetyViolation([Violation("no_node_errors", str(raised), nodes=("n2",))])
    found = recognise_finding(failure, "ReplSet", [raised], [])
    assert isinstance(found, BatteryFinding) and found.symptom_of == 17 and found.violations == failure.violations
    assert str(found).startswith("symptom of finding 17: a battery call that raises")
    stalled = LivenessViolation("liveness: healed cluster did not commit a write")
    assert recognise_finding(stalled, "ReplList", [raised, raised], []).symptom_of == 17
    past_the_end = _node_error("pysyncobj/batteries.py", function="set")  # ReplList.set(9, v) on a short list
    assert recognise_finding(SafetyViolation([Violation("no_node_errors", str(past_the_end))]), "ReplList",
                             [past_the_end], []).symptom_of == 17


def test_anything_else_an_unguarded_machine_finds_stays_a_failure():
    raised = _node_error("pysyncobj/batteries.py")
    others = [_node_error("pysyncobj/syncobj.py"),  # pysyncobj's own code
              _node_error("notpysyncobj/batteries.py"),  # some other package's file of that name
              _node_error("pysyncobj/batteries.py", function="add"),  # not a call known to raise
              _node_error("pysyncobj/batteries.py", applying=False)]  # not while applying an entry
    for other in others:
        failure = SafetyViolation([Violation("no_node_errors", str(other))])
        assert recognise_finding(failure, "ReplSet", [other], []) is failure, other.traceback
    mixed = SafetyViolation([Violation("no_node_errors", str(raised)), Violation("state_machine_safety", "4@1 vs 4@2")])
    assert recognise_finding(mixed, "ReplSet", [raised], []) is mixed
    stalled = LivenessViolation("liveness: healed cluster did not commit a write")
    assert recognise_finding(stalled, "ReplList", [others[0]], []) is stalled
    assert recognise_finding(stalled, "ReplList", [raised, others[0]], []) is stalled  # one other error is enough
    assert recognise_finding(stalled, "ReplList", [], []) is stalled


def test_replicas_of_a_popped_replset_disagreeing_is_recognised_as_finding_18():
    differ = SafetyViolation([Violation("replica_agreement", "ReplSet replicas that applied entries 1..9 differ",
                                        nodes=("n1", "n2", "n3"))])
    popped = [_set_op("add"), _set_op("pop")]
    assert recognise_finding(differ, "ReplSet", [], popped, loaded_snapshot=["n2"]).symptom_of == 18
    assert recognise_finding(differ, "ReplSet", [], popped, loaded_snapshot=[]) is differ  # no snapshot loaded
    assert recognise_finding(differ, "ReplSet", [], popped, loaded_snapshot=["n4"]) is differ  # not one of them
    assert recognise_finding(differ, "ReplSet", [], [_set_op("add"), _set_op("pop", FAILED)], ["n2"]) is differ
    assert recognise_finding(differ, "ReplSet", [], [_set_op("add"), _set_op("discard")], ["n2"]) is differ
    assert recognise_finding(differ, "ReplList", [], [_set_op("pop")], ["n2"]) is differ


def test_the_unguarded_list_machine_runs_into_finding_17_and_says_so():
    """``ReplList.pop()`` without a position raises inside pysyncobj on every replica."""
    with pytest.raises(BatteryFinding) as found:
        run_state_machine_as_test(battery_machine("ReplList"), settings=settings(
            _QUICK, max_examples=30, stateful_step_count=30, report_multiple_bugs=False))
    assert found.value.symptom_of == 17
    from harness.fuzz import machine
    from harness.ledger.triage import triage

    failure = machine.last_failure
    verdict = triage(failure.machine, failure.steps, failure.patches, failure.invariants)
    assert verdict.label == "symptom of finding 17" and not verdict.is_known  # no fix confirms it: not "known"


# --- bad input ----------------------------------------------------------------------------------------
def test_battery_machine_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"battery must be one of \['ReplCounter'.*got 'ReplFoo'"):
        battery_machine("ReplFoo")
    with pytest.raises(ValueError, match="network must be 'fifo' or 'unreliable'"):
        battery_machine("counter", network="tcp")
    with pytest.raises(TypeError, match="guarded must be a bool"):
        battery_machine("counter", guarded="yes")


class NotASyncObj:
    pass


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(node_class=NotASyncObj), ValueError, "node_class must be a pysyncobj.SyncObj subclass"),
    (dict(node_class="SyncObj"), ValueError, "node_class must be a pysyncobj.SyncObj subclass"),
    (dict(consumers=[ReplCounter()]), TypeError, "consumers must be a callable taking a node id"),
    (dict(consumers=lambda node: ReplCounter()), TypeError, "must return a mapping"),
    (dict(consumers=lambda node: [object()]), TypeError, "consumer 'object' must be a pysyncobj SyncObjConsumer"),
    (dict(consumers=lambda node: [ReplCounter(), ReplCounter()]), ValueError, "two consumers named 'ReplCounter'"),
    (dict(consumers=lambda node: {1: ReplCounter()}), TypeError, "consumer names must be non-empty strings"),
    (dict(consumers=lambda node: {}), ValueError, "returned no consumers"),
    (dict(consumers=lambda node: [ReplLockManager(1.0)]), ValueError, "needs an explicit selfID"),
    (dict(consumers=lambda node: {node: ReplCounter()}), ValueError, "every node needs the same consumers"),
])
def test_cluster_rejects_bad_consumers_and_node_classes(kwargs, error, message):
    with pytest.raises(error, match=message):
        Cluster(3, seed=0, **kwargs)
    assert not adapter.patched()


def test_clients_must_name_an_existing_consumer_and_a_method_it_has():
    with Cluster(1, seed=0, consumers=lambda node: {"counter": ReplCounter(), "locks": ReplLockManager(1.0, "a")}) as c:
        c.wait_leader()
        with pytest.raises(ValueError, match=r"consumer must be one of \['counter', 'locks'\], got 'queue'"):
            c.call("put", "q", 1, consumer="queue")
        with pytest.raises(ValueError, match=r"method must be one of \['add', 'inc', 'set', 'sub'\]"):
            c.call("get", "counter", consumer="counter")
        with pytest.raises(ValueError, match=r"method must be one of \['tryAcquire', 'release'\]"):
            c.call("isAcquired", "L", "L", consumer="locks")
        with pytest.raises(ValueError, match="must be a local .*got 'add'"):
            c.local_call("add", "counter", 1, consumer="counter")
        with pytest.raises(ValueError, match="must be a local .*got '_serialize'"):
            c.local_call("_serialize", "counter", consumer="counter")
    with Cluster(1, seed=0, node_class=KVStore) as c:
        with pytest.raises(ValueError, match="built without consumers="):
            c.call("add", "counter", 1, consumer="counter")


def test_consumers_can_sit_on_a_syncobj_subclass():
    with Cluster(3, seed=0, node_class=KVStore, consumers=lambda node: {"counter": ReplCounter()}) as c:
        c.wait_leader()
        assert c.must_call("add", "counter", 2, consumer="counter").result == 2
        assert c.must_put("k", 1).outcome == OK
        assert isinstance(c.node(c.leader()), SyncObj)


class ShortLeaseLocks(battery_machine("locks")):
    """A seeded bug: the lock managers expire locks after 0.1 s, clients are promised 1 s (the checker's U)."""

    def new_consumer(self, node_id: str):
        return ReplLockManager(0.1, selfID=node_id)


def test_the_lock_machine_catches_locks_that_expire_too_early():
    assert ShortLeaseLocks.auto_unlock_time == 1.0
    with pytest.raises(SafetyViolation, match="lock_"):
        run_state_machine_as_test(ShortLeaseLocks, settings=settings(_QUICK, max_examples=30))
