"""Ready-made state machines for pysyncobj's batteries: one line fuzzes one under every fault.

::

    from harness.fuzz.batteries import battery_machine

    class CounterRaft(battery_machine("ReplCounter")):  # or battery_machine("counter")
        pass

    TestCounterRaft = CounterRaft.TestCase

Each machine is a :class:`~harness.fuzz.machine.RaftMachine` (every network,
node and membership fault rule, Raft safety after every step) whose nodes are
plain ``SyncObj`` with the battery as their one consumer, named after it
(``"counter"``, ``"locks"``, ...; also the history key of its operations).
Its rules call the battery's replicated methods with explicit arguments
through a chosen node (followers forward) and read it locally
(``Cluster.local_read``).  At teardown the operations must be linearizable
under the battery's model (:mod:`harness.check.batteries`) and the replicas
that applied the same entries must hold the same state; for
``ReplLockManager`` the lock properties of :mod:`harness.check.locks` are
checked after every step.

Two findings in the batteries stop these machines early, each reproduced in
``tests/findings/``: some calls raise inside pysyncobj in some states
(``ReplSet.remove`` of a missing item, ``ReplList.pop()``), which stops every
node's state machine for good (``test_battery_call_that_raises_halts_cluster``),
and ``ReplSet.pop`` takes different elements on different replicas once one
has loaded a snapshot (``test_replset_pop_diverges``).  ``guarded=True``
keeps clear of both, so that a machine can look for what else there is: a
call that may raise is sent right after one, through the same node, that
makes it not raise (``add`` before ``remove``, ``extend`` before ``pop``;
another client's call landing in between still makes it raise, and so does
a reordering on the unreliable network), and ``ReplSet.pop`` is not called.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Dict, Iterable, Optional, Tuple

from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule
from pysyncobj import SyncObj

from harness.adapter import batteries as adapter
from harness.check import batteries as models
from harness.check.invariants import LivenessViolation, SafetyViolation, Violation
from harness.check.locks import LockSample, lock_violations
from harness.fuzz.machine import RaftMachine, UnreliableNetworkRules, note, targets
from harness.history import OK
from harness.ledger.bugs import LEDGER
from harness.report.text import describe
from harness.sim.cluster import Cluster

ITEMS = (1, 2, 3)
KEYS = ("a", "b")
POSITIONS = (0, 1, -1)
LOCKS = ("L1", "L2")

items = st.sampled_from(ITEMS)
keys = st.sampled_from(KEYS)
positions = st.sampled_from(POSITIONS)


class BatteryFinding(AssertionError):
    """A failure of an unguarded machine recognised as ledger bug 17 (a replicated call raised inside
    pysyncobj, which halts every node's state machine) or 18 (``ReplSet.pop`` diverged).

    Neither bug has an in-process fix, so triage cannot confirm them by replay; they are recognised by
    their symptom instead, narrowly, so that anything else an unguarded machine finds stays a failure.
    """

    def __init__(self, bug: int, failure: AssertionError) -> None:
        self.symptom_of = bug  # what triage reads (harness.ledger.triage)
        self.violations = getattr(failure, "violations", ())
        super().__init__(f"symptom of finding {bug}: {LEDGER[bug].title}\n{failure}")


def recognise_finding(failure: AssertionError, battery: str, node_errors, history,
                      loaded_snapshot: Iterable[str] = ()) -> AssertionError:
    """``failure`` as a :class:`BatteryFinding` when its symptom is bug 17's or 18's, else unchanged.

    17: every violation is an exception inside a node raised by one of the calls known to raise
    (``remove``, ``pop``, ``set``) of pysyncobj's batteries while a committed entry was applied, or the healed
    cluster made no progress and every exception inside a node was such a one.  18: every violation
    is replicas of a ``ReplSet`` disagreeing, in a history where a pop took effect, with one of those
    replicas having loaded its set from a snapshot (``loaded_snapshot``: node ids), which is what
    makes ``set.pop`` choose differently.  A battery that raises on one replica only because another
    bug made it diverge is not told apart; the guarded machines, which avoid those calls, catch such
    a divergence as ``replica_agreement``.
    """
    violations = getattr(failure, "violations", ())
    if node_errors and all(_raised_applying_battery_call(e.traceback) for e in node_errors) \
            and isinstance(failure, LivenessViolation):
        return BatteryFinding(17, failure)
    if violations and all(v.invariant == "no_node_errors" and _raised_applying_battery_call(v.message)
                          for v in violations):
        return BatteryFinding(17, failure)
    loaded = set(loaded_snapshot)
    if battery == "ReplSet" and violations and all(v.invariant == "replica_agreement" for v in violations) \
            and any(op.kind == "pop" and op.outcome == OK for op in history) \
            and any(loaded.intersection(v.nodes) for v in violations):
        return BatteryFinding(18, failure)
    return failure


_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+, in (?P<function>\S+)\s*$')
#: The battery methods the unguarded machines call that raise in some states (bug 17's symptom), by the
#: name in a traceback: ``ReplSet.remove``/``pop``, ``ReplList.remove``/``pop``/``set`` (past the end).
_RAISING_CALLS = ("remove", "pop", "set")


def _raised_applying_battery_call(traceback: str) -> bool:
    frames = [m.groupdict() for m in map(_FRAME.match, traceback.splitlines()) if m]
    if not frames:
        return False
    path, function = frames[-1]["path"].replace("\\", "/"), frames[-1]["function"]
    applying = any(f["function"] == "__doApplyCommand" for f in frames)
    return path.endswith("/pysyncobj/batteries.py") and function in _RAISING_CALLS and applying


class BatteryMachine(RaftMachine):
    """What every battery machine shares: the consumer, proposing and reading it, the teardown checks."""

    node_class = SyncObj
    write = read = None  # the key-value rules of RaftMachine; a battery has its own
    battery = ""  # class name in pysyncobj.batteries
    object_name = ""  # the consumer's name, and the history key of its operations
    guarded = False  # see the module docstring
    has_raising_calls = False  # whether some rule makes a call that raises inside pysyncobj in some states
    probe: Tuple[str, tuple] = ("", ())  # the call the liveness check commits

    def new_consumer(self, node_id: str) -> Any:
        return adapter.BATTERIES[self.battery]()

    def new_model(self) -> Optional[models.BatteryModel]:
        return models.model_for(self.battery)

    def make_cluster(self, nodes: int, seed: int) -> Cluster:
        return Cluster(nodes, seed, self.network, node_class=self.node_class, record_events=self.stream_checks,
                       **self.cluster_options, **self.pysyncobj_conf,
                       consumers=lambda node_id: {self.object_name: self.new_consumer(node_id)})

    def submit(self, method: str, *args: Any, via: str):
        """Propose ``method(*args)`` of the battery through node ``via``; its history entry."""
        return self.cluster.call(method, self.object_name, *args, via=via, consumer=self.object_name)

    def propose(self, via: str, method: str, *args: Any, guard: Optional[Tuple[str, tuple]] = None) -> None:
        """``method(*args)`` through ``via`` (a node id or "leader"); with ``guarded``, ``guard`` first."""
        node = self._via(via)
        if node is not None:
            if guard is not None and self.guarded:
                self.submit(guard[0], *guard[1], via=node)
            self.submit(method, *args, via=node)
            note(f"{self.battery}.{method}")
        self._settle()

    def read_local(self, via: str, method: str, *args: Any) -> None:
        """A local read of ``via``'s replica (stale-able; judged as such)."""
        node = self._via(via)
        if node is not None:
            self.cluster.local_call(method, self.object_name, *args, via=node, consumer=self.object_name)
            note(f"{self.battery}.{method} (local)")
        self._settle()

    def background_operation(self, leader: str) -> None:
        raise NotImplementedError

    def liveness_probe(self, timeout: float) -> None:
        method, args = self.probe
        self.cluster.must_call(method, self.object_name, *args, timeout=timeout, consumer=self.object_name)

    def _fail(self, exc: AssertionError) -> None:
        if self.has_raising_calls and not self.guarded and self.cluster is not None:
            c = self.cluster
            states = [c.state(n) for n in c.node_ids]
            loaded = [s.id for s in states if s.incarnation > 1 or s.snapshots_installed]
            exc = recognise_finding(exc, self.battery, c.node_errors, c.history, loaded)
        super()._fail(exc)

    def _check_linearizable(self) -> None:
        model = self.new_model()
        if model is not None:
            self._judge_linearizable(lambda: models.check_battery(self.cluster.history, {self.object_name: model}))
        self._check_replicas()

    def _check_replicas(self) -> None:
        """Replicas that applied the same entries hold the same state (after the liveness probe)."""
        c = self.cluster

        def applied() -> Dict[str, int]:
            return {n: c.state(n).last_applied for n in c.up_ids()}

        c.run_until(lambda: len(set(applied().values())) == 1, timeout=5.0)
        at = applied()
        if not at:
            return
        top = max(at.values())
        replicas = {n: adapter.state(c.consumer(n, self.object_name)) for n in sorted(at) if at[n] == top}
        first = next(iter(replicas))
        differ = [n for n, s in replicas.items() if s != replicas[first]]
        if differ:
            states = "\n".join(f"  {n}: {s!r}" for n, s in replicas.items())
            self._fail(SafetyViolation([Violation(
                "replica_agreement", f"{self.battery} replicas that applied entries 1..{top} differ:\n{states}",
                nodes=tuple(replicas))], describe(c)))


class CounterMachine(BatteryMachine):
    """``ReplCounter``: ``add(0)`` is the read through the log; ``get()`` the local one."""

    battery, object_name = "ReplCounter", "counter"
    probe = ("add", (0,))

    def background_operation(self, leader: str) -> None:
        self.submit("add", 1, via=leader)

    @rule(via=targets, value=st.sampled_from((0, 7)))
    def set_value(self, via: str, value: int) -> None:
        self.propose(via, "set", value)

    @rule(via=targets, amount=st.sampled_from((0, 1, 5)))
    def add(self, via: str, amount: int) -> None:
        self.propose(via, "add", amount)

    @rule(via=targets, amount=st.sampled_from((1, 3)))
    def sub(self, via: str, amount: int) -> None:
        self.propose(via, "sub", amount)

    @rule(via=targets)
    def inc(self, via: str) -> None:
        self.propose(via, "inc")

    @rule(via=targets)
    def get_local(self, via: str) -> None:
        self.read_local(via, "get")


class DictMachine(BatteryMachine):
    """``ReplDict``: values are fresh integers, so a read names the write it saw."""

    battery, object_name = "ReplDict", "dict"
    probe = ("setdefault", ("liveness", 0))

    def background_operation(self, leader: str) -> None:
        value = self._value()
        self.submit("set", KEYS[value % 2], value, via=leader)

    @rule(via=targets, key=keys)
    def set_item(self, via: str, key: str) -> None:
        self.propose(via, "set", key, self._value())

    @rule(via=targets, key=keys)
    def setitem(self, via: str, key: str) -> None:
        self.propose(via, "__setitem__", key, self._value())

    @rule(via=targets, key=keys)
    def setdefault(self, via: str, key: str) -> None:
        self.propose(via, "setdefault", key, self._value())

    @rule(via=targets, key=keys)
    def update(self, via: str, key: str) -> None:
        self.propose(via, "update", {key: self._value()})

    @rule(via=targets, key=keys)
    def pop(self, via: str, key: str) -> None:
        self.propose(via, "pop", key)

    @rule(via=targets)
    def clear(self, via: str) -> None:
        self.propose(via, "clear")

    @rule(via=targets, key=keys)
    def reset(self, via: str, key: str) -> None:
        self.propose(via, "reset", {key: self._value()})

    @rule(via=targets, key=keys)
    def get_local(self, via: str, key: str) -> None:
        self.read_local(via, "get", key)

    @rule(via=targets, key=keys)
    def contains_local(self, via: str, key: str) -> None:
        self.read_local(via, "__contains__", key)

    @rule(via=targets)
    def len_local(self, via: str) -> None:
        self.read_local(via, "__len__")

    @rule(via=targets)
    def raw_local(self, via: str) -> None:
        self.read_local(via, "rawData")


class ListMachine(BatteryMachine):
    """``ReplList``.  ``pop()`` without a position always raises in pysyncobj (``list.pop(None)``)."""

    battery, object_name = "ReplList", "list"
    has_raising_calls = True
    probe = ("append", (0,))

    def background_operation(self, leader: str) -> None:
        self.submit("append", self._value(), via=leader)

    @rule(via=targets)
    def append(self, via: str) -> None:
        self.propose(via, "append", self._value())

    @rule(via=targets)
    def extend(self, via: str) -> None:
        self.propose(via, "extend", [self._value(), self._value()])

    @rule(via=targets, position=positions)
    def insert(self, via: str, position: int) -> None:
        self.propose(via, "insert", position, self._value())

    @rule(via=targets)
    def reset(self, via: str) -> None:
        self.propose(via, "reset", [self._value()])

    @rule(via=targets, reverse=st.booleans())
    def sort(self, via: str, reverse: bool) -> None:
        self.propose(via, "sort", reverse)

    @rule(via=targets, position=positions)
    def set_item(self, via: str, position: int) -> None:
        self.propose(via, "set", position, self._value(), guard=("extend", ([0, 0],)))

    @rule(via=targets, item=items)
    def remove(self, via: str, item: int) -> None:
        self.propose(via, "remove", item, guard=("append", (item,)))

    @rule(via=targets, position=st.sampled_from((None, 0, -1)))
    def pop(self, via: str, position: Optional[int]) -> None:
        if position is None and not self.guarded:
            self.propose(via, "pop")
        else:
            self.propose(via, "pop", -1 if position is None else position, guard=("extend", ([0, 0],)))

    @rule(via=targets)
    def len_local(self, via: str) -> None:
        self.read_local(via, "__len__")

    @rule(via=targets, item=items)
    def count_local(self, via: str, item: int) -> None:
        self.read_local(via, "count", item)

    @rule(via=targets)
    def raw_local(self, via: str) -> None:
        self.read_local(via, "rawData")


class SetMachine(BatteryMachine):
    """``ReplSet`` over three items, so that adds, removes and pops collide."""

    battery, object_name = "ReplSet", "set"
    has_raising_calls = True
    probe = ("discard", (0,))

    def background_operation(self, leader: str) -> None:
        item = ITEMS[self._value() % len(ITEMS)]
        self.submit("add", item, via=leader)

    @rule(via=targets, item=items)
    def add(self, via: str, item: int) -> None:
        self.propose(via, "add", item)

    @rule(via=targets, item=items)
    def discard(self, via: str, item: int) -> None:
        self.propose(via, "discard", item)

    @rule(via=targets, item=items)
    def remove(self, via: str, item: int) -> None:
        self.propose(via, "remove", item, guard=("add", (item,)))

    @precondition(lambda self: not self.guarded)  # its replicas diverge (see the module docstring)
    @rule(via=targets)
    def pop(self, via: str) -> None:
        self.propose(via, "pop")

    @rule(via=targets)
    def clear(self, via: str) -> None:
        self.propose(via, "clear")

    @rule(via=targets, first=items, second=items)
    def update(self, via: str, first: int, second: int) -> None:
        self.propose(via, "update", [first, second])

    @rule(via=targets, item=items)
    def reset(self, via: str, item: int) -> None:
        self.propose(via, "reset", {item})

    @rule(via=targets, item=items)
    def contains_local(self, via: str, item: int) -> None:
        self.read_local(via, "__contains__", item)

    @rule(via=targets)
    def len_local(self, via: str) -> None:
        self.read_local(via, "__len__")

    @rule(via=targets)
    def raw_local(self, via: str) -> None:
        self.read_local(via, "rawData")


class QueueMachine(BatteryMachine):
    """``ReplQueue(maxsize=3)``: ``put`` on a full queue returns False, ``get`` on an empty one the default."""

    battery, object_name = "ReplQueue", "queue"
    probe = ("get", ())
    maxsize = 3

    def new_consumer(self, node_id: str) -> Any:
        return adapter.BATTERIES[self.battery](maxsize=self.maxsize)

    def new_model(self) -> models.BatteryModel:
        return models.model_for(self.battery, self.maxsize)

    def background_operation(self, leader: str) -> None:
        value = self._value()
        if value % 2:
            self.submit("put", value, via=leader)
        else:
            self.submit("get", via=leader)

    @rule(via=targets)
    def put(self, via: str) -> None:
        self.propose(via, "put", self._value())

    @rule(via=targets, default=st.sampled_from((None, -1)))
    def get(self, via: str, default: Optional[int]) -> None:
        self.propose(via, "get", *(() if default is None else (default,)))

    @rule(via=targets, method=st.sampled_from(("qsize", "empty", "full")))
    def size_local(self, via: str, method: str) -> None:
        self.read_local(via, method)


class PriorityQueueMachine(QueueMachine):
    """``ReplPriorityQueue(maxsize=3)``: items from a small range, so the order of ``get`` matters."""

    battery, object_name = "ReplPriorityQueue", "priority_queue"

    @rule(via=targets, item=items)
    def put(self, via: str, item: int) -> None:
        self.propose(via, "put", item)


class LockManagerMachine(BatteryMachine):
    """``ReplLockManager(autoUnlockTime, selfID=<node id>)``, lock properties checked after every step."""

    battery, object_name = "ReplLockManager", "locks"
    auto_unlock_time = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.samples = []  # LockSample answers True (False ones cannot break a property)

    def new_consumer(self, node_id: str) -> Any:
        return adapter.BATTERIES[self.battery](self.auto_unlock_time, selfID=node_id)

    def new_model(self) -> None:
        return None  # its state depends on clock stamps and the prolongation thread: harness.check.locks

    def background_operation(self, leader: str) -> None:
        lock = LOCKS[self._value() % len(LOCKS)]
        self.cluster.call("tryAcquire", lock, lock, via=leader, consumer=self.object_name)

    def liveness_probe(self, timeout: float) -> None:
        self.cluster.must_call("release", "liveness", "liveness", timeout=timeout, consumer=self.object_name)

    def propose_lock(self, via: str, method: str, lock: str) -> None:
        node = self._via(via)
        if node is not None:
            self.cluster.call(method, lock, lock, via=node, consumer=self.object_name)
            note(f"{self.battery}.{method}")
        self._settle()

    @rule(via=targets, lock=st.sampled_from(LOCKS))
    def try_acquire(self, via: str, lock: str) -> None:
        self.propose_lock(via, "tryAcquire", lock)

    @rule(via=targets, lock=st.sampled_from(LOCKS))
    def release_lock(self, via: str, lock: str) -> None:
        self.propose_lock(via, "release", lock)

    @invariant()
    def lock_safety(self) -> None:
        """Mutual exclusion, hand-over only by release or expiry, isAcquired agreeing with the replicated
        state: :mod:`harness.check.locks`, on every node's ``isAcquired`` answers sampled now."""
        c = self.cluster
        if c is None or self._failed:
            return
        up = c.up_ids()
        tables = {n: adapter.lock_table(c.consumer(n, self.object_name)) for n in up}
        applied = {n: c.state(n).last_applied for n in up}
        newest = max(up, key=lambda n: (applied[n], n), default=None)
        for node in up:
            for lock in LOCKS:
                op = c.local_call("isAcquired", lock, lock, via=node, consumer=self.object_name)
                if op.result:
                    entry = tables[newest].get(lock)
                    self.samples.append(LockSample(op.invoke, node, lock, True, entry[0] if entry else None))
        found = lock_violations(c.history, self.samples, c.consumers.lock_transitions, self.auto_unlock_time)
        if found:
            self._fail(SafetyViolation(found, describe(c)))


#: Machine class of each battery, by class name.
MACHINES: Dict[str, type] = {m.battery: m for m in (CounterMachine, DictMachine, ListMachine, SetMachine,
                                                     QueueMachine, PriorityQueueMachine, LockManagerMachine)}
#: Short names :func:`battery_machine` also takes.
ALIASES: Dict[str, str] = {m.object_name: m.battery for m in MACHINES.values()}


def battery_machine(battery: str, *, network: str = "fifo", guarded: bool = False) -> type:
    """The fuzzing machine of one pysyncobj battery, by class name (``"ReplCounter"``) or short name
    (``"counter"``); ``network`` ``"fifo"`` (pysyncobj's TCP contract) or ``"unreliable"`` (adds the
    duplicate and reorder rules); ``guarded`` see the module docstring.  Same arguments, same class."""
    canonical = ALIASES.get(battery, battery)
    if canonical not in MACHINES:
        raise ValueError(f"battery must be one of {sorted(MACHINES)} or {sorted(ALIASES)}, got {battery!r}")
    if network not in ("fifo", "unreliable"):
        raise ValueError(f"network must be 'fifo' or 'unreliable', got {network!r}")
    if not isinstance(guarded, bool):
        raise TypeError(f"guarded must be a bool, got {guarded!r}")
    return _machine(canonical, network, guarded)


@functools.lru_cache(maxsize=None)
def _machine(battery: str, network: str, guarded: bool) -> type:
    bases = (MACHINES[battery],) + ((UnreliableNetworkRules,) if network == "unreliable" else ())
    name = _class_name(battery, network, guarded)
    return type(name, bases, {"guarded": guarded, "__module__": __name__, "__qualname__": name})


def _class_name(battery: str, network: str, guarded: bool) -> str:
    return f"{battery}{'Guarded' if guarded else ''}{'Unreliable' if network == 'unreliable' else ''}Raft"


def __getattr__(name: str) -> type:
    """The machines :func:`battery_machine` makes, by class name: a counterexample names its machine
    ``harness.fuzz.batteries.ReplCounterUnreliableRaft``, and ``replay`` imports it so."""
    for battery in MACHINES:
        for network in ("fifo", "unreliable"):
            for guarded in (False, True):
                if name == _class_name(battery, network, guarded):
                    return _machine(battery, network, guarded)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
