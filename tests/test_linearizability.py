"""Tests for the per-key register linearizability checker."""
from __future__ import annotations

import itertools
import random
from typing import Any, List, Optional

import pytest

from harness.history import FAILED, OK, PENDING, READ, UNKNOWN, WRITE, Operation
from harness.check.linearizability import Model, RegisterModel, SearchTooLarge, check_linearizable

_ids = itertools.count()


def op(
    kind: str,
    value: Any,
    invoke: float,
    complete: Optional[float],
    outcome: str = OK,
    key: str = "x",
) -> Operation:
    return Operation(
        id=next(_ids), kind=kind, key=key, value=value, via="n1",
        invoke=invoke, complete=complete, outcome=outcome,
    )


def w(value: Any, invoke: float, complete: Optional[float], outcome: str = OK, key: str = "x") -> Operation:
    return op(WRITE, value, invoke, complete, outcome, key)


def r(value: Any, invoke: float, complete: Optional[float], outcome: str = OK, key: str = "x") -> Operation:
    return op(READ, value, invoke, complete, outcome, key)


# --- basic cases -------------------------------------------------------------


def test_empty_history_is_linearizable():
    result = check_linearizable([])
    assert result and result.key is None and result.operations == ()


def test_sequential_valid_history_passes():
    h = [w(1, 0, 1), r(1, 2, 3), w(2, 4, 5), r(2, 6, 7), r(2, 8, 9)]
    result = check_linearizable(h)
    assert result.ok and bool(result)
    assert result.key is None and result.operations == ()


@pytest.mark.parametrize("seen", [1, 2])
def test_concurrent_read_may_see_old_or_new_value(seen):
    h = [w(1, 0, 1), w(2, 2, 6), r(seen, 3, 5)]
    assert check_linearizable(h)


def test_stale_read_fails_and_is_explained():
    write1, write2, stale = w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)
    result = check_linearizable([write1, write2, stale])
    assert not result
    assert result.key == "x"
    assert [o.id for o in result.operations] == [write1.id, write2.id, stale.id]
    assert result.explanation
    assert f"#{stale.id}" in result.explanation
    assert "reads 1 but the register holds 2" in result.explanation


def test_read_of_value_never_written_fails():
    assert not check_linearizable([w(1, 0, 1), r(99, 2, 3)])


def test_read_of_initial_none_before_any_write_passes():
    assert check_linearizable([r(None, 0, 1), w(1, 2, 3), r(1, 4, 5)])


def test_read_of_none_after_completed_write_fails():
    assert not check_linearizable([w(1, 0, 1), r(None, 2, 3)])


def test_custom_initial_value():
    assert check_linearizable([r(0, 0, 1)], initial=0)
    assert not check_linearizable([r(None, 0, 1)], initial=0)


def test_touching_intervals_are_concurrent():
    # The write completes at 1.0 exactly when the read is invoked: treated as
    # overlapping, so the read may be ordered before the write.
    assert check_linearizable([w(1, 0, 1), r(None, 1, 2)])
    assert not check_linearizable([w(1, 0, 1), r(None, 1.001, 2)])


# --- unknown, pending and failed outcomes ---------------------------------------


@pytest.mark.parametrize("outcome", [UNKNOWN, PENDING])
def test_unknown_write_may_be_seen_later(outcome):
    assert check_linearizable([w(1, 0, 1), w(2, 2, None, outcome), r(2, 10, 11)])


@pytest.mark.parametrize("outcome", [UNKNOWN, PENDING])
def test_unknown_write_may_never_be_seen(outcome):
    assert check_linearizable([w(1, 0, 1), w(2, 2, 3, outcome), r(1, 10, 11)])


def test_unknown_write_cannot_be_seen_before_invoked():
    assert not check_linearizable([r(2, 0, 1), w(2, 2, None, UNKNOWN)])


def test_unknown_write_cannot_disappear_once_seen():
    h = [w(1, 0, 1), w(2, 2, None, UNKNOWN), r(2, 3, 4), r(1, 5, 6)]
    result = check_linearizable(h)
    assert not result and result.key == "x"


def test_unknown_write_seen_then_overwritten_passes():
    h = [w(1, 0, 1), w(2, 2, None, UNKNOWN), r(2, 3, 4), w(3, 5, 6), r(3, 7, 8)]
    assert check_linearizable(h)


def test_unknown_write_takes_effect_at_most_once():
    # Seeing 2, then 1 (overwritten), then 2 again would need the unknown write twice.
    h = [w(1, 0, 1), w(2, 2, None, UNKNOWN), r(2, 3, 4), w(1, 5, 6), r(1, 7, 8), r(2, 9, 10)]
    assert not check_linearizable(h)


def test_unknown_and_pending_reads_are_ignored():
    h = [w(1, 0, 1), r(42, 2, 3, UNKNOWN), r(43, 2, None, PENDING), r(1, 4, 5)]
    assert check_linearizable(h)


def test_failed_write_is_never_visible():
    result = check_linearizable([w(1, 0, 1), w(2, 2, 3, FAILED), r(2, 4, 5)])
    assert not result and result.key == "x"


def test_failed_write_does_not_hide_earlier_value():
    assert check_linearizable([w(1, 0, 1), w(2, 2, 3, FAILED), r(1, 4, 5)])


def test_ok_operation_without_completion_time_is_rejected():
    with pytest.raises(ValueError):
        check_linearizable([w(1, 0, None, OK)])


# --- per-key decomposition -------------------------------------------------------


def test_violation_is_reported_on_the_right_key():
    a_ops = [w(1, 0, 1, key="a"), r(1, 2, 3, key="a")]
    b_ops = [w(1, 0, 1, key="b"), w(2, 2, 3, key="b"), r(1, 4, 5, key="b")]
    c_ops = [w(5, 0, 1, key="c"), r(5, 2, 3, key="c")]
    result = check_linearizable(c_ops + b_ops + a_ops)
    assert not result
    assert result.key == "b"
    assert [o.id for o in result.operations] == [o.id for o in b_ops]
    assert "'b'" in result.explanation


def test_keys_are_independent_registers():
    # Reading 1 on "b" is fine even though "a" was overwritten in the meantime.
    h = [w(1, 0, 1, key="a"), w(1, 0, 1, key="b"), w(2, 2, 3, key="a"), r(1, 4, 5, key="b")]
    assert check_linearizable(h)


def test_interleaved_valid_histories_on_many_keys_pass():
    rng = random.Random(7)
    h: List[Operation] = []
    state = {}
    t = 0.0
    for _ in range(400):
        key = f"k{rng.randrange(20)}"
        if rng.random() < 0.5:
            v = rng.randrange(1000)
            h.append(w(v, t, t + 0.5, key=key))
            state[key] = v
        else:
            h.append(r(state.get(key), t, t + 0.5, key=key))
        t += 1
    assert check_linearizable(h)


def test_result_is_independent_of_input_order():
    h = [w(1, 0, 1), w(2, 0.5, 3), r(2, 1.5, 2), r(1, 4, 5), w(3, 0, 1, key="y"), r(4, 2, 3, key="y")]
    first = check_linearizable(h)
    assert not first and first.key == "x"
    for seed in range(5):
        shuffled = h[:]
        random.Random(seed).shuffle(shuffled)
        again = check_linearizable(shuffled)
        assert (again.ok, again.key, again.operations, again.explanation) == (
            first.ok, first.key, first.operations, first.explanation,
        )


# --- generated histories ------------------------------------------------------------


def sequential_history(seed: int, n: int = 300, keys: int = 3) -> List[Operation]:
    """Non-overlapping ops against a dict model; linearizable by construction."""
    rng = random.Random(seed)
    model = {}
    h = []
    t = 0.0
    for i in range(n):
        key = f"k{rng.randrange(keys)}"
        start, end = t + rng.random(), t + 1 + rng.random()
        if rng.random() < 0.4:
            value = f"v{i}"
            model[key] = value
            h.append(w(value, start, end, key=key))
        else:
            h.append(r(model.get(key), start, end, key=key))
        t = end + 0.01
    return h


@pytest.mark.parametrize("seed", range(6))
def test_sequential_generated_history_passes_and_corruption_fails(seed):
    h = sequential_history(seed)
    assert check_linearizable(h)

    rng = random.Random(1000 + seed)
    victim = rng.choice([o for o in h if o.kind == READ])
    written = sorted({o.value for o in h if o.kind == WRITE and o.key == victim.key})
    wrong = [v for v in written + [None] if v != victim.value] or ["never-written"]
    victim.value = rng.choice(wrong)
    result = check_linearizable(h)
    assert not result
    assert result.key == victim.key
    assert victim in result.operations


def concurrent_history(seed: int, n: int = 200, clients: int = 4, unknown_rate: float = 0.0) -> List[Operation]:
    """Clients issue back-to-back ops; each takes effect at a random instant in its interval.

    With ``unknown_rate`` > 0 some writes are reported as unknown; half of those
    never take effect at all.  Linearizable by construction either way.
    """
    rng = random.Random(seed)
    clock = [rng.random() for _ in range(clients)]
    planned = []  # (effect time or None, op)
    for i in range(n):
        c = min(range(clients), key=lambda k: (clock[k], k))
        start = clock[c]
        end = start + rng.uniform(0.1, 3.0)
        clock[c] = end + rng.uniform(0.0, 0.5)
        effect: Optional[float] = rng.uniform(start, end)
        if rng.random() < 0.5:
            o = w(f"v{i}", start, end)
            if rng.random() < unknown_rate:
                o.outcome = UNKNOWN
                if rng.random() < 0.5:
                    effect = None
        else:
            o = r(None, start, end)
        planned.append((effect, o))
    value = None
    for effect, o in sorted((p for p in planned if p[0] is not None), key=lambda p: p[0]):
        if o.kind == WRITE:
            value = o.value
        else:
            o.value = value
    return [o for _, o in planned]


@pytest.mark.parametrize("seed", range(5))
def test_concurrent_generated_history_passes(seed):
    h = concurrent_history(seed)
    result = check_linearizable(h)
    assert result, result.explanation


@pytest.mark.parametrize("seed", range(5))
def test_concurrent_history_with_unknown_writes_passes(seed):
    h = concurrent_history(seed, unknown_rate=0.3)
    assert any(o.outcome == UNKNOWN for o in h)
    result = check_linearizable(h)
    assert result, result.explanation


def test_concurrent_history_with_a_read_of_a_future_value_fails():
    h = concurrent_history(3)
    # A read that completes before a write is even invoked cannot return that write's value.
    writes = [o for o in h if o.kind == WRITE]
    late = writes[-1]
    early_read = next(o for o in h if o.kind == READ and o.complete < late.invoke)
    early_read.value = late.value
    assert not check_linearizable(h)


# --- search budget ------------------------------------------------------------------


def test_max_states_guard_raises():
    # Twelve fully concurrent writes, then a read of a value nobody wrote: the
    # search must try every subset of the writes before giving up.
    h = [w(i, 0, 10) for i in range(12)] + [r("nobody", 20, 21)]
    with pytest.raises(SearchTooLarge, match=r"too large.*'x'.*13 ops"):
        check_linearizable(h, max_states=100)
    assert not check_linearizable(h)  # with the default budget it completes


# --- cross-check against brute force --------------------------------------------------


def brute_force_linearizable(h: List[Operation], initial: Any = None, model: Optional[Model] = None) -> bool:
    """Try every order of every admissible subset of a single key's ops: of the ok ones and the optional
    writes as a register starting at ``initial`` (written here, apart from the checker's own models), or
    of the ok ones and every optional one under ``model``."""
    required = [o for o in h if o.outcome == OK]
    optional = [o for o in h if o.outcome in (UNKNOWN, PENDING) and (model is not None or o.kind == WRITE)]

    def end(o: Operation) -> float:
        return o.complete if o.outcome == OK else float("inf")

    def register(value: Any, o: Operation):
        return (True, o.value) if o.kind == WRITE else (o.value == value, value)

    step, start = (register, initial) if model is None else (model.step, model.initial())
    for k in range(len(optional) + 1):
        for extra in itertools.combinations(optional, k):
            for order in itertools.permutations(required + list(extra)):
                if any(end(b) < a.invoke for i, a in enumerate(order) for b in order[i + 1:]):
                    continue
                state, fits = start, True
                for o in order:
                    fits, state = step(state, o)
                    if not fits:
                        break
                if fits:
                    return True
    return False


def small_random_history(rng: random.Random, n: int) -> List[Operation]:
    h = []
    for _ in range(n):
        start = rng.randrange(6)  # coarse integer times make ties common
        end = start + rng.randrange(3)
        outcome = rng.choice([OK, OK, OK, FAILED, UNKNOWN])
        if rng.random() < 0.5:
            h.append(w(rng.choice([1, 2, 3]), start, end, outcome))
        else:
            h.append(r(rng.choice([None, 1, 2, 3]), start, end, outcome))
    return h


def test_agrees_with_brute_force_on_small_histories():
    rng = random.Random(2024)
    verdicts = set()
    for _ in range(400):
        h = small_random_history(rng, rng.randrange(1, 7))
        expected = brute_force_linearizable(h)
        assert check_linearizable(h).ok == expected, "\n".join(map(str, h))
        verdicts.add(expected)
    assert verdicts == {True, False}  # both kinds of history were exercised


# --- the generic search, with a sequential model -----------------------------------------

def test_generic_search_agrees_with_register_search_and_brute_force():
    """RegisterModel through the generic search gives the same verdicts as the specialised one."""
    rng = random.Random(7)
    verdicts = set()
    for _ in range(400):
        h = small_random_history(rng, rng.randrange(1, 7))
        expected = brute_force_linearizable(h)
        assert check_linearizable(h, model=RegisterModel()).ok == expected, "\n".join(map(str, h))
        verdicts.add(expected)
    assert verdicts == {True, False}


class CounterModel(Model):
    """incr(n) adds n and returns the new total; get() returns it."""

    def initial(self):
        return 0

    def step(self, state, o):
        new = state + o.value if o.kind == "incr" else state
        return o.outcome != OK or o.result == new, new


def counter_op(kind, value, result, invoke, complete, outcome=OK, key="c"):
    o = op(kind, value, invoke, complete, outcome, key)
    o.result = result
    return o


def test_counter_model_accepts_a_valid_concurrent_history():
    h = [counter_op("incr", 1, 1, 0, 2), counter_op("incr", 2, 3, 1, 3), counter_op("get", None, 3, 4, 5)]
    assert check_linearizable(h, model=CounterModel())


def test_counter_model_rejects_a_lost_increment():
    """Two acknowledged increments, then a read that misses one of them."""
    h = [counter_op("incr", 1, 1, 0, 1), counter_op("incr", 2, 3, 2, 3), counter_op("get", None, 1, 4, 5)]
    result = check_linearizable(h, model=CounterModel())
    assert not result and result.key == "c"
    assert "CounterModel" in result.explanation and "get" in result.explanation


def test_counter_model_unknown_increment_may_or_may_not_apply():
    base = [counter_op("incr", 1, 1, 0, 1), counter_op("incr", 5, None, 2, None, UNKNOWN)]
    assert check_linearizable(base + [counter_op("get", None, 6, 4, 5)], model=CounterModel())
    assert check_linearizable(base + [counter_op("get", None, 1, 4, 5)], model=CounterModel())
    assert not check_linearizable(base + [counter_op("get", None, 4, 4, 5)], model=CounterModel())


def test_counter_search_agrees_with_brute_force_on_histories_full_of_unknown_increments():
    """Small histories where most increments are of unknown outcome, against brute force."""
    rng = random.Random(11)
    verdicts = set()
    for _ in range(300):
        h = []
        for _ in range(rng.randrange(1, 7)):
            start = rng.randrange(5)
            outcome = rng.choice([OK, UNKNOWN, UNKNOWN, PENDING, FAILED])
            if rng.random() < 0.6:
                amount = rng.choice([0, 1, 2, 3])
                h.append(counter_op("incr", amount, rng.randrange(7), start, start + rng.randrange(3), outcome))
            else:
                h.append(counter_op("get", None, rng.randrange(7), start, start + rng.randrange(3), outcome))
        expected = brute_force_linearizable(h, model=CounterModel())
        assert check_linearizable(h, model=CounterModel()).ok == expected, "\n".join(map(str, h))
        verdicts.add(expected)
    assert verdicts == {True, False}


# --- the log's order as a witness ---------------------------------------------------------


def indexed(o: Operation, index: Optional[int]) -> Operation:
    o.index = index
    return o


def test_log_order_proves_a_stalled_burst_linearizable_without_a_search():
    """Sixty increments acknowledged together after a stall (all concurrent) plus one that timed out and
    whose entry nobody learnt: the results allow one order, the log gave it, and the search, which
    tries orders of concurrent calls, would need far more than the budget below."""
    h = [indexed(counter_op("incr", 1, i + 1, i, 100), i + 1) for i in range(30)]
    h.append(counter_op("incr", 5, None, 30, None, UNKNOWN))  # applied at index 31, unbeknown to its client
    h += [indexed(counter_op("incr", 1, 36 + i, 31 + i, 100), 32 + i) for i in range(30)]
    assert check_linearizable(h, model=CounterModel(), max_states=50)
    for o in h:
        o.index = None
    with pytest.raises(RuntimeError, match="too large"):
        check_linearizable(h, model=CounterModel(), max_states=50)


def test_log_order_against_real_time_is_no_witness():
    """The log puts b before a although a returned before b was called; the results agree with the log,
    so a witness that ignored real time would pass a history that is not linearizable."""
    a = indexed(w(1, 0, 1), 2)
    b = indexed(w(2, 2, 3), 1)
    seen = indexed(r(1, 4, 5), 2)
    assert not check_linearizable([a, b, seen])


def test_verdicts_do_not_depend_on_the_log_indexes_given():
    """Random indexes, true or not, never change a verdict: brute force ignores them."""
    rng = random.Random(5)
    verdicts = set()
    for _ in range(400):
        h = small_random_history(rng, rng.randrange(1, 7))
        order = list(range(len(h)))
        rng.shuffle(order)
        for o, index in zip(h, order):
            o.index = index if rng.random() < 0.9 else None
        expected = brute_force_linearizable(h)
        assert check_linearizable(h).ok == expected, "\n".join(map(str, h))
        assert check_linearizable(h, model=RegisterModel()).ok == expected, "\n".join(map(str, h))
        verdicts.add(expected)
    assert verdicts == {True, False}
