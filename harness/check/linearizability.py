"""Linearizability checking for histories of per-key read/write registers.

The search is Wing & Gong's, with Lowe's memoization and "just-in-time"
linearization: walk the call/return events in time order, tentatively
linearize an operation when its call is reached, and backtrack as soon as the
return of an operation that has not been linearized is reached (it had to take
effect before it returned).  A cache of (linearized-set, register value) pairs
stops the search from re-exploring a configuration it already knows to be a
dead end, which is what makes it fast on realistic histories.

Registers are independent objects, so a history is linearizable iff each key's
sub-history is (Herlihy & Wing's locality); each key is checked on its own,
which keeps every search small.

Semantics of outcomes:

* ``ok``: took effect exactly once within ``[invoke, complete]``; an ok read
  returned ``value``.
* ``failed``: definitely never took effect, so it is ignored.
* ``unknown`` / ``pending``: may have taken effect at any time after
  ``invoke`` (there is no upper bound), or never.  Such a write is optional:
  the search may linearize it anywhere after its call or skip it.  Such a read
  returned nothing anyone saw, so it carries no information and is ignored.

Ties: when one operation completes at exactly the time another is invoked, the
two are treated as concurrent (calls sort before returns at equal times).
Virtual clocks make exact ties common and the order of same-instant events is
not observable by the clients, so the lenient reading avoids false alarms.

The search is deterministic: operations are ordered by ``(invoke, id)`` and
events by ``(time, call-before-return, position)``; nothing depends on hash or
set iteration order.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Hashable, Iterable, List, Optional, Tuple

from harness.history import FAILED, LOCAL_PREFIX, LOCAL_READ, OK, PENDING, READ, UNKNOWN, WRITE, Operation

_OUTCOMES = (OK, FAILED, UNKNOWN, PENDING)


class SearchTooLarge(RuntimeError):
    """The search for a linearization needed more than ``max_states`` configurations: undecided."""


@dataclasses.dataclass(frozen=True)
class LinearizabilityResult:
    """Verdict of :func:`check_linearizable`; truthy iff the history is linearizable."""

    ok: bool
    key: Optional[str]  # first key (sorted order) whose sub-history is not linearizable
    operations: Tuple[Operation, ...]  # all ops on that key, by (invoke, id); empty when ok
    explanation: str

    def __bool__(self) -> bool:
        return self.ok


class Model:
    """A sequential specification of the object behind one key, for :func:`check_linearizable`.

    ``step`` applies one operation to a state and returns ``(possible, next
    state)``; ``possible`` is False when the operation cannot have happened in
    that state (its observed ``result`` disagrees).  An operation whose outcome
    is not ``ok`` has no result to check and must be accepted with its effect.
    States must be hashable: the search memoizes them.
    """

    def initial(self) -> Hashable:
        raise NotImplementedError

    def step(self, state: Hashable, op: Operation) -> Tuple[bool, Hashable]:
        raise NotImplementedError


def check_linearizable(
    history: Iterable[Operation], initial: Any = None, max_states: int = 1_000_000,
    model: Optional[Model] = None,
) -> LinearizabilityResult:
    """Check that ``history`` is linearizable, key by key.

    Without ``model`` each key is a register starting at ``initial`` (writes
    and reads, with a search specialised for them); with ``model`` each key is
    an object of that sequential specification.  Keys are checked in sorted
    order and the first violating key is reported.  Raises :class:`SearchTooLarge` if
    one key's search needs more than ``max_states`` memoized configurations (so
    a pathological history fails loudly instead of hanging), and
    ``ValueError`` for malformed operations.
    """
    by_key: Dict[str, List[Operation]] = {}
    for op in history:
        if op.kind == LOCAL_READ:
            continue  # served outside the log, so not linearizable by design: harness.check.local_reads
        _validate(op, registers=model is None)
        by_key.setdefault(op.key, []).append(op)

    for key in sorted(by_key, key=repr):
        ops = sorted(by_key[key], key=lambda o: (o.invoke, o.id))
        if _log_order_is_a_witness(ops, RegisterModel(initial) if model is None else model):
            continue
        if model is None:
            problem = _check_key(key, ops, initial, max_states)
        else:
            problem = _check_key_model(key, ops, model, max_states)
        if problem is not None:
            return LinearizabilityResult(False, key, tuple(ops), problem)
    total = sum(len(ops) for ops in by_key.values())
    return LinearizabilityResult(
        True, None, (), f"linearizable: {len(by_key)} key(s), {total} operation(s)"
    )


def _log_order_is_a_witness(ops: List[Operation], model: Model) -> bool:
    """Whether the order the replicated log gave the operations is itself a linearization.

    Every ok operation must know its log index (a local read: the index its
    replica had applied, so it goes right after that entry); optional ones
    with an index are placed there.  An optional one without (a call that
    timed out, whose entry the client never learnt) held one of the indexes
    missing from the sequence, if it took effect: when the model rejects an
    operation, each such gap before it, nearest first, is tried for each such
    call.  The order must satisfy the model and real time (nothing placed
    after an operation that returned before it was called).  A valid witness
    proves the history linearizable in one pass; anything else goes to the
    search, which alone may say "not linearizable".  It matters when many
    acknowledgements arrive together after a stall: dozens of ok calls then
    overlap, and the search would try their orders although the results allow
    only one.
    """
    if any(op.outcome == OK and op.index is None for op in ops):
        return False
    placed = sorted((op for op in ops if op.outcome != FAILED and op.index is not None),
                    key=lambda o: (o.index, o.kind.startswith(LOCAL_PREFIX), o.invoke, o.id))
    spare = [op for op in ops if op.outcome not in (OK, FAILED) and op.index is None]
    order: List[Operation] = []  # the witness so far
    states: List[Any] = [model.initial()]  # states[j]: before order[j]; states[-1]: now
    latest_call = -math.inf
    for op in placed:
        if op.outcome == OK and op.complete < latest_call:
            return False
        possible, after = model.step(states[-1], op)
        if not possible:
            filled = _fill_a_gap(order, states, op, spare, model)
            if filled is None:
                return False
            after, extra = filled
            latest_call = max(latest_call, extra.invoke)
        order.append(op)
        states.append(after)
        latest_call = max(latest_call, op.invoke)
    return True


def _fill_a_gap(order: List[Operation], states: List[Any], op: Operation, spare: List[Operation],
                model: Model) -> Optional[Tuple[Any, Operation]]:
    """Insert one of ``spare`` where a log index is missing in ``order`` so that ``op`` fits after it:
    the state after ``op`` and the call inserted (``order``, ``states``, ``spare`` updated), or None."""
    sequence = order + [op]
    ends = [o.complete if o.outcome == OK else math.inf for o in sequence]
    for j in range(len(order) - 1, -1, -1):  # ends[j]: the earliest return from position j on
        ends[j] = min(ends[j], ends[j + 1])
    covered = [0]  # covered[j]: the log indexes 1..covered[j] hold something before position j
    for o in order:
        local = o.kind.startswith(LOCAL_PREFIX)
        covered.append(covered[-1] + 1 if o.index is None else covered[-1] if local else o.index)
    for j in range(len(order), -1, -1):
        at = sequence[j]
        needs = (at.index if at.kind.startswith(LOCAL_PREFIX) else at.index - 1) if at.index is not None else 0
        if needs <= covered[j]:
            continue  # no index is missing before it: nothing unseen can have taken effect there
        for extra in spare:
            if extra.invoke > ends[j]:
                continue  # it would come after an operation that returned before it was called
            replayed = [states[j]]
            fits = True
            for o in [extra] + sequence[j:]:
                fits, state = model.step(replayed[-1], o)
                if not fits:
                    break
                replayed.append(state)
            if fits:
                spare.remove(extra)
                order.insert(j, extra)
                states[j:] = replayed[:-1]
                return replayed[-1], extra
    return None


def _validate(op: Operation, registers: bool) -> None:
    if registers and op.kind not in (WRITE, READ):
        raise ValueError(f"operation {op.id}: unknown kind {op.kind!r}")
    if op.outcome not in _OUTCOMES:
        raise ValueError(f"operation {op.id}: unknown outcome {op.outcome!r}")
    if op.outcome == OK:
        if op.complete is None:
            raise ValueError(f"operation {op.id}: outcome ok but no completion time")
        if op.complete < op.invoke:
            raise ValueError(f"operation {op.id}: completes before it is invoked")


def _relevant(ops: List[Operation]) -> List[Operation]:
    """The ops that constrain the search.

    Besides failed ops and non-ok reads, an optional (non-ok) write whose value
    no ok read returned is dropped: in any linearization containing it, no read
    observes its value, so every read's most recent preceding write is some
    other write and removing it changes nothing.  Pruning these keeps the search
    from branching on writes that cannot matter.
    """
    read_values = {op.value for op in ops if op.kind == READ and op.outcome == OK}
    return [
        op
        for op in ops
        if op.outcome == OK or (op.kind == WRITE and op.outcome != FAILED and op.value in read_values)
    ]


def _event_list(ops: List[Operation], required: List[bool]):
    """The call/return events of ``ops`` as a doubly linked list in time order, for the search.

    Entries 1..2n are the events, 0 the sentinel (head and tail); optional ops
    return at +inf.  Returns ``(op_of, is_call, nxt, lift, unlift)``: ``lift``
    unlinks an op's call and return entries (it has been linearized) and
    ``unlift`` relinks them, in reverse order.
    """
    n = len(ops)
    events = sorted([(op.invoke, 0, i) for i, op in enumerate(ops)]
                    + [(op.complete if required[i] else math.inf, 1, i) for i, op in enumerate(ops)])
    op_of = [-1] + [i for _, _, i in events]
    is_call = [False] + [kind == 0 for _, kind, _ in events]
    ret_entry = [0] * n
    for entry, (_, kind, i) in enumerate(events, start=1):
        if kind == 1:
            ret_entry[i] = entry
    nxt = list(range(1, 2 * n + 1)) + [0]
    prv = [2 * n] + list(range(0, 2 * n))

    def lift(call: int) -> None:
        for e in (call, ret_entry[op_of[call]]):
            nxt[prv[e]] = nxt[e]
            prv[nxt[e]] = prv[e]

    def unlift(call: int) -> None:
        for e in (ret_entry[op_of[call]], call):
            nxt[prv[e]] = e
            prv[nxt[e]] = e

    return op_of, is_call, nxt, lift, unlift


def _check_key(key: str, all_ops: List[Operation], initial: Any, max_states: int) -> Optional[str]:
    """Search one key's sub-history; return None if linearizable, else an explanation."""
    ops = _relevant(all_ops)
    n = len(ops)
    required = [op.outcome == OK for op in ops]

    op_of, is_call, nxt, lift, unlift = _event_list(ops, required)

    state = initial
    linearized = 0  # bitset over indices of ``ops``
    remaining = sum(required)
    stack: List[Tuple[int, Any]] = []  # (call entry linearized, register value before it)
    cache = set()
    deepest: Optional[Tuple[List[Operation], Any, Operation, List[Operation]]] = None

    # Reads change nothing, so a read that matches the register can be
    # linearized as soon as it is enabled (every op that must precede it is
    # linearized): moving it to the front of any valid continuation keeps that
    # continuation valid.  Each configuration therefore first looks for such a
    # read (a forced move) and only branches over writes when there is none;
    # if a forced read's branch fails, so does the configuration.
    entry = nxt[0]
    reads_only = True
    # While a required op is unlinearized its finite return precedes every
    # +inf return, so the walk always meets a return before the list ends.
    while remaining:
        i = op_of[entry]
        if is_call[entry]:
            op = ops[i]
            is_read = op.kind == READ
            if (is_read and state != op.value) or (not is_read and reads_only):
                entry = nxt[entry]
                continue
            bits = linearized | (1 << i)
            if (bits, op.value) not in cache:
                cache.add((bits, op.value))
                if len(cache) > max_states:
                    raise SearchTooLarge(
                        f"linearizability search too large for key {key!r} "
                        f"({n} ops considered of {len(all_ops)}): more than "
                        f"max_states={max_states} configurations explored"
                    )
                stack.append((entry, state))
                state, linearized = op.value, bits
                remaining -= required[i]
                lift(entry)
                entry, reads_only = nxt[0], True
                continue
            if not is_read:
                entry = nxt[entry]
                continue
            # The forced read leads to a configuration already found dead.
        elif reads_only:
            entry, reads_only = nxt[0], False
            continue
        elif deepest is None or len(stack) > len(deepest[0]):
            # The return of an unlinearized op: the current prefix is a dead end.
            candidates = []
            e = nxt[0]
            while e != entry:
                if is_call[e]:
                    candidates.append(ops[op_of[e]])
                e = nxt[e]
            deepest = ([ops[op_of[c]] for c, _ in stack], state, ops[i], candidates)

        # Backtrack to the most recent write; popped reads were forced moves.
        while True:
            if not stack:
                assert deepest is not None  # a dead end was met before any cache hit
                return _explain(key, all_ops, ops, deepest)
            call, state = stack.pop()
            j = op_of[call]
            linearized &= ~(1 << j)
            remaining += required[j]
            unlift(call)
            if ops[j].kind == WRITE:
                break
        entry, reads_only = nxt[call], False
    return None


def _check_key_model(key: str, all_ops: List[Operation], model: Model, max_states: int) -> Optional[str]:
    """Wing & Gong with Lowe's memoization for an arbitrary sequential model.

    The same event list as :func:`_check_key`, without the register-only
    shortcuts: at each call entry the op is linearized if the model accepts
    it; the return of an op not yet linearized forces a backtrack.  Failed ops
    are left out; ops of unknown outcome return at +inf, so they may be
    linearized anywhere after their call or never.

    Optional ops equal in kind and value are interchangeable (none has a
    result or a return to respect), so they are linearized in invocation
    order only: a linearization that uses some of them can always use the
    earliest-invoked ones instead.  Without this, a client that retries one
    call many times through a deposed leader (every retry pending forever)
    makes the search explore every subset of the retries.
    """
    ops = [op for op in all_ops if op.outcome != FAILED]
    n = len(ops)
    required = [op.outcome == OK for op in ops]
    op_of, is_call, nxt, lift, unlift = _event_list(ops, required)
    twin_before = _earlier_twins(ops, required)

    state = model.initial()
    linearized, remaining = 0, sum(required)
    stack: List[Tuple[int, Any]] = []
    cache = set()
    deepest: Optional[Tuple[List[Operation], Any, Operation]] = None
    entry = nxt[0]
    while remaining:
        i = op_of[entry]
        if is_call[entry] and twin_before[i] >= 0 and not linearized >> twin_before[i] & 1:
            entry = nxt[entry]  # its earlier twin goes first (see above)
            continue
        if is_call[entry]:
            possible, after = model.step(state, ops[i])
            bits = linearized | (1 << i)
            if possible and (bits, after) not in cache:
                cache.add((bits, after))
                if len(cache) > max_states:
                    raise SearchTooLarge(f"linearizability search too large for key {key!r} ({n} ops): "
                                       f"more than max_states={max_states} configurations explored")
                stack.append((entry, state))
                state, linearized = after, bits
                remaining -= required[i]
                lift(entry)
                entry = nxt[0]
                continue
            entry = nxt[entry]
            continue
        if deepest is None or len(stack) > len(deepest[0]):
            deepest = ([ops[op_of[c]] for c, _ in stack], state, ops[i])
        if not stack:
            prefix, at, blocked = deepest
            lines = [f"key {key!r} is not linearizable under {type(model).__name__} "
                     f"({n} operations considered).",
                     f"Longest linearizable prefix found ({len(prefix)} ops), ending in state {at!r}:"]
            lines += [f"  {op}" for op in prefix] or ["  (empty)"]
            lines.append(f"No ordering lets {blocked} take effect before it returned.")
            return "\n".join(lines)
        call, state = stack.pop()
        j = op_of[call]
        linearized &= ~(1 << j)
        remaining += required[j]
        unlift(call)
        entry = nxt[call]
    return None


def _earlier_twins(ops: List[Operation], required: List[bool]) -> List[int]:
    """For each optional op, the position of the latest earlier optional op of equal kind and value; -1 if none."""
    twin_before = [-1] * len(ops)
    last: List[Tuple[str, Any, int]] = []  # (kind, value, position) of the latest optional op of each class
    for i, op in enumerate(ops):
        if required[i]:
            continue
        for j, (kind, value, position) in enumerate(last):
            if kind == op.kind and value == op.value:
                twin_before[i] = position
                last[j] = (kind, value, i)
                break
        else:
            last.append((op.kind, op.value, i))
    return twin_before


class RegisterModel(Model):
    """A read/write register, the model :func:`check_linearizable` uses when given none."""

    def __init__(self, initial: Hashable = None) -> None:
        self._initial = initial

    def initial(self) -> Hashable:
        return self._initial

    def step(self, state, op):
        if op.kind == WRITE:
            return True, op.value
        return op.kind == READ and (op.outcome != OK or op.value == state), state


def _explain(
    key: str,
    all_ops: List[Operation],
    ops: List[Operation],
    deepest: Tuple[List[Operation], Any, Operation, List[Operation]],
) -> str:
    prefix, state, blocked, candidates = deepest
    lines = [
        f"key {key!r} is not linearizable ({len(ops)} relevant of {len(all_ops)} operations).",
        f"Longest linearizable prefix found ({len(prefix)} ops), after which the register holds {state!r}:",
    ]
    lines += [f"  {op}" for op in prefix] or ["  (empty)"]
    lines.append(f"No operation could follow it before {blocked} had to take effect; tried:")
    for op in candidates:
        if op.kind == READ and op.value != state:
            why = f"reads {op.value!r} but the register holds {state!r}"
        else:
            why = "can be applied, but no ordering of the rest succeeds after it"
        lines.append(f"  {op}: {why}")
    return "\n".join(lines)
