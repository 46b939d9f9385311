"""``Cluster``: real pysyncobj nodes in one process, in virtual time, over a simulated network.

The API reads like TiKV's ``test_raftstore``::

    with Cluster(nodes=3, seed=7) as c:
        leader = c.wait_leader()
        c.must_put("k", 1)
        c.isolate_node(leader)
        c.run_for(5)
        c.clear_all_filters()
        assert c.must_get("k") == 1

Every node is a ``pysyncobj.SyncObj`` with ``autoTick=False`` ticked by the
harness: after each message it receives (as pysyncobj's poller would wake it)
and otherwise every ``autoTickPeriod`` virtual seconds.  Time, randomness and
message delivery are owned by the cluster, so a run is a function of the seed
and the calls made on it.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf

from harness.sim import clock as _clock
from harness.adapter import batteries as _batteries
from harness.adapter import observe as compat
from harness.sim.events import EventQueue
from harness.wire.filters import Filter, FilterFactory, IsolationFilterFactory, PartitionFilterFactory
from harness.history import FAILED, OK, PENDING, READ, UNKNOWN, WRITE, History, Operation
from harness.kv import KVStore
from harness.sim.consumers import ConsumerFactory, Consumers, local_kind
from harness.sim.network import NETWORK_MODELS, SimNetwork, SimNode
from harness.state import NodeState, crashed_state
from harness.sim.storage import StorageFaults

MAX_NODES = 9

#: Outcomes after which a command may or may not have been applied.
_UNKNOWN_REASONS = {FAIL_REASON.LEADER_CHANGED, getattr(FAIL_REASON, "UNKNOWN_OUTCOME", -1)}


@dataclasses.dataclass(frozen=True)
class NodeError:
    """An exception raised by pysyncobj code inside a node: always a finding, never swallowed."""

    node: str
    incarnation: int
    activity: str  # what the node was doing: "tick", "handling append_entries from n2", …
    time: float
    traceback: str

    def __str__(self) -> str:
        return (f"exception in node {self.node} (incarnation {self.incarnation}) while {self.activity} "
                f"at t={self.time:.6f}:\n{self.traceback}")


@dataclasses.dataclass
class MembershipChange:
    kind: str  # "add" or "remove"
    node: str
    via: str
    invoke: float
    complete: Optional[float] = None
    outcome: str = PENDING
    reason: Optional[str] = None


class _Slot:
    """Everything the harness keeps about one node id, outside the node object."""

    def __init__(self, node_id: str, voter: bool, directory: Path) -> None:
        self.id = node_id
        self.voter = voter
        self.dir = directory
        self.obj = None  # the live SyncObj, None while crashed
        self.incarnation = 0
        self.timer_gen = 0
        self.removed = False
        # In the configuration for sure: an initial voter, or one whose add succeeded.  Restarted and
        # new nodes are given only these as peers: pysyncobj takes its constructor's peer list as
        # the base configuration, so a node whose add is still pending (or whose outcome is unknown)
        # listed there would get votes counted that the log never granted it.
        self.member = False


def _check_duration(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 virtual seconds, got {value!r}")
    return float(value)


_CONF_KEYS = frozenset(vars(SyncObjConf()))


def _fast_tmp() -> Optional[str]:
    """A memory-backed temp dir when the machine has one: the journal, its metadata and the
    dumps are real files either way (a simulated crash is a process crash, not a power cut),
    but pysyncobj rewrites its metadata file every virtual second and disk renames dominate."""
    explicit = os.environ.get("RAFT_HARNESS_TMP")
    if explicit:
        return explicit  # e.g. the CLI's scratch dir, removed even if workers are killed
    if os.environ.get("TMPDIR"):
        return None  # the user chose where temporary files go
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _reason_name(code: int) -> str:
    return compat.FAIL_REASONS.get(code, str(code))


def settle(op: Operation, obj, result: Any, error: int, finish: Callable[[Operation, str, Optional[str]], None]) -> None:
    """Record what pysyncobj's callback said about client operation ``op``, proposed on node ``obj``:
    its log slot and result on success; ``finish(op, outcome, reason)`` settles it in the history."""
    if op.outcome != PENDING:
        return  # already settled, e.g. as unknown when its proposer crashed
    if error == FAIL_REASON.SUCCESS:
        op.index = compat.applying_index(obj)
        op.term = compat.entry_term(obj, op.index)
        op.result = result
        if op.kind == READ:
            op.value = result
        finish(op, OK, None)
    elif error in _UNKNOWN_REASONS:
        finish(op, UNKNOWN, _reason_name(error))
    else:
        finish(op, FAILED, _reason_name(error))


class _CommonApi:
    """What :class:`Cluster` and :class:`harness.tcp.cluster.TcpCluster` share: it needs only their
    ``_slot``, ``leader``, ``up_ids``, ``add_send_filter_factory`` and ``close``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _client_target(self, via: Optional[str]) -> str:
        if via is None:
            via = self.leader() or (self.up_ids() or [None])[0]
            if via is None:
                raise ValueError("no node is up to take the request")
        self._slot(via, "via")
        return via

    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Cut every link between ``group_a`` and ``group_b``; other nodes still reach both."""
        group_a, group_b = list(group_a), list(group_b)
        for n in group_a:
            self._slot(n, "group_a")
        for n in group_b:
            self._slot(n, "group_b")
        self.add_send_filter_factory(PartitionFilterFactory(group_a, group_b))

    def isolate_node(self, node_id: str) -> None:
        """Cut ``node_id`` off from every other node."""
        self._slot(node_id)
        self.add_send_filter_factory(IsolationFilterFactory(node_id))


class Cluster(_CommonApi):
    """A simulated pysyncobj cluster.  Use as a context manager, or call :meth:`close`.

    ``node_class`` (a ``SyncObj`` subclass) defaults to :class:`~harness.kv.KVStore`.
    ``consumers``, a callable taking a node id, gives each node incarnation its
    ``SyncObjConsumer`` objects (e.g. pysyncobj's batteries) as ``{name: consumer}``
    or a list; the nodes are then plain ``SyncObj`` unless ``node_class`` says
    otherwise, and clients reach a consumer with ``call(..., consumer=name)``
    and :meth:`local_read`.  See :mod:`harness.sim.consumers`.
    """

    def __init__(self, nodes: int = 3, seed: int = 0, network: str = "fifo", *,
                 node_class: Optional[type] = None, consumers: Optional[ConsumerFactory] = None,
                 latency: Tuple[float, float] = (0.002, 0.02),
                 reconnect_delay: float = 0.2, read_step: float = 1e-6, base_dir: Optional[str] = None,
                 **pysyncobj_conf: Any) -> None:
        if not isinstance(nodes, int) or isinstance(nodes, bool) or not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"nodes must be an int in [1, {MAX_NODES}], got {nodes!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if network not in NETWORK_MODELS:
            raise ValueError(f"network must be one of {list(NETWORK_MODELS)}, got {network!r}")
        for forbidden, why in (("autoTick", "the harness ticks nodes itself"),
                               ("useFork", "a forked dump writer is nondeterministic"),
                               ("journalFile", "the harness gives every node its own files"),
                               ("fullDumpFile", "the harness gives every node its own files")):
            if forbidden in pysyncobj_conf:
                raise ValueError(f"{forbidden} cannot be set: {why}")
        if node_class is None:
            node_class = KVStore if consumers is None else SyncObj
        if not (isinstance(node_class, type) and issubclass(node_class, SyncObj)):
            raise TypeError(f"node_class must be a subclass of pysyncobj.SyncObj, got {node_class!r}")
        #: The nodes' consumers (None without ``consumers=``); ``.lock_transitions`` for lock managers.
        self.consumers = None if consumers is None else Consumers(consumers)
        self.seed = seed
        self.network_model = network
        self._node_class = node_class
        self._conf = dict(dynamicMembershipChange=True, logCompactionMinEntries=10 ** 9,
                          logCompactionMinTime=10 ** 9)
        unknown = sorted(set(pysyncobj_conf) - _CONF_KEYS)
        if unknown:
            raise ValueError(f"unknown pysyncobj setting(s) {unknown}; SyncObjConf takes {sorted(_CONF_KEYS)}")
        self._conf.update(pysyncobj_conf)
        try:  # bad pysyncobj settings fail here, not inside a node
            SyncObjConf(**self._conf).validate()
        except AssertionError:
            raise ValueError(f"pysyncobj settings {sorted(pysyncobj_conf)} are rejected by "
                             f"SyncObjConf.validate() (e.g. raftMinTimeout must be < raftMaxTimeout), "
                             f"got {pysyncobj_conf!r}") from None
        self.tick_interval = float(self._conf.get("autoTickPeriod", 0.05))
        self._clock = _clock.VirtualClock(read_step=read_step)
        self._node_rng = random.Random(seed)
        self._net_rng = random.Random(f"network-{seed}")
        self._events = EventQueue()
        self._slots: Dict[str, _Slot] = {}
        self._factories: List[FilterFactory] = []
        self._running = False
        self.history = History()
        self.membership_changes: List[MembershipChange] = []
        self.node_errors: List[NodeError] = []
        self.stats: Dict[str, int] = {"ticks": 0, "crashes": 0, "restarts": 0, "snapshots_forced": 0}
        self._root: Optional[Path] = None
        self.storage: Optional[StorageFaults] = None  # storage failpoints, see harness.sim.storage
        self._closed = False
        _clock.acquire()
        if self.consumers is not None:
            _batteries.acquire()
        try:
            self._root = Path(tempfile.mkdtemp(prefix="raft-harness-", dir=base_dir or _fast_tmp()))
            self.storage = StorageFaults(self._root, self._events.at, self._clock.now, self.crash)
            self._net = SimNetwork(network, self._events, self._clock, self._net_rng, latency,
                                   reconnect_delay, self._run_on, self._after_delivery)
            ids = [f"n{i}" for i in range(1, nodes + 1)]
            with self._active():
                for node_id in ids:
                    self._new_slot(node_id, voter=True).member = True
                for node_id in ids:
                    self._start(node_id, peers=[p for p in ids if p != node_id])
        except BaseException:
            self.close()
            raise

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Drop every node, delete every temp dir, give pysyncobj its own clock back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for slot in self._slots.values():
                if slot.obj is not None:
                    compat.close_files(slot.obj)
                    slot.obj = None
        finally:
            if self.storage is not None:
                self.storage.close()
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
            if self.consumers is not None:
                _batteries.release()
            _clock.release()

    def _active(self):
        if self._closed:
            raise RuntimeError("this Cluster is closed")
        return _clock.activate(self._clock, self._node_rng)

    def _new_slot(self, node_id: str, voter: bool) -> _Slot:
        directory = self._root / node_id
        directory.mkdir()
        slot = self._slots[node_id] = _Slot(node_id, voter, directory)
        self._net.register(node_id, voter)
        return slot

    def _node_conf(self, slot: _Slot) -> SyncObjConf:
        return SyncObjConf(autoTick=False, useFork=False, journalFile=str(slot.dir / "journal"),
                           fullDumpFile=str(slot.dir / "dump"), **self._conf)

    def _start(self, node_id: str, peers: Sequence[str]) -> None:
        slot = self._slots[node_id]
        slot.incarnation += 1
        others = [SimNode(p) for p in sorted(peers)]
        self_node = SimNode(node_id) if slot.voter else None
        extra, threads = {}, []
        if self.consumers is not None:
            extra["consumers"], threads = self.consumers.build(node_id)
        try:
            obj = self._node_class(self_node, others, self._node_conf(slot), nodeClass=SimNode,
                                   transportClass=self._net.transport_factory(node_id), **extra)
        except Exception:
            self._record_error(node_id, "starting", traceback.format_exc())
            raise
        if self.consumers is not None:
            self.consumers.attach(node_id, slot.incarnation, obj, self._clock.now)
        for thread in threads:
            self._events.at(self._clock.now() + thread.wake_after, self._drive, slot, slot.incarnation, thread)
        compat.watch_journal(obj)
        self.storage.attach(node_id, obj)
        slot.obj = obj
        self._net.node_up(node_id)
        self._schedule_tick(slot, self._clock.now() + self._net_rng.uniform(0, self.tick_interval))

    # --- the event loop --------------------------------------------------------------------
    def _record_error(self, node_id: str, activity: str, tb: str) -> None:
        slot = self._slots[node_id]
        self.node_errors.append(NodeError(node_id, slot.incarnation, activity, self._clock.now(), tb))

    def _run_on(self, node_id: str, activity: str, thunk: Callable[[], None]) -> None:
        """Run pysyncobj code for one node; an exception becomes a NodeError, never escapes or hides."""
        try:
            thunk()
        except Exception:
            self._record_error(node_id, activity, traceback.format_exc())
        self._net.flush(node_id)

    def _schedule_tick(self, slot: _Slot, at: float) -> None:
        slot.timer_gen += 1
        self._events.at(at, self._timer, slot, slot.timer_gen)

    def _timer(self, slot: _Slot, gen: int) -> None:
        if gen == slot.timer_gen and slot.obj is not None:
            self._tick(slot)

    def _tick(self, slot: _Slot) -> None:
        obj = slot.obj
        self.stats["ticks"] += 1
        try:  # _run_on inlined: this is the hottest path of the simulation
            obj.doTick(0.0)
        except Exception:
            self._record_error(slot.id, "tick", traceback.format_exc())
        self._net.flush(slot.id)
        if slot.obj is obj:
            self._schedule_tick(slot, self._clock.now() + self.tick_interval)

    def _drive(self, slot: _Slot, incarnation: int, thread: _batteries.CooperativeThread) -> None:
        """One turn of a consumer's background thread, on virtual time (see harness.adapter.batteries)."""
        if slot.obj is None or slot.incarnation != incarnation:
            return  # the process it ran in is gone
        wake: List[Optional[float]] = []
        self._run_on(slot.id, "consumer thread", lambda: wake.append(thread.step()))
        if wake and wake[0] is not None:
            self._events.at(self._clock.now() + wake[0], self._drive, slot, incarnation, thread)

    def _after_delivery(self, node_id: str) -> None:
        # pysyncobj's poller returns when a message arrives and the next tick runs at once.
        slot = self._slots[node_id]
        if slot.obj is not None:
            self._tick(slot)

    def _run_events(self, until: float, stop: Optional[Callable[[], bool]] = None) -> bool:
        with self._active():
            while True:
                if stop is not None and stop():
                    return True
                t = self._events.next_time()
                if t is None or t > until:
                    break
                t, action, args = self._events.pop()
                self._clock.advance_to(t)
                action(*args)
            self._clock.advance_to(until)
            return stop is not None and stop()

    pysyncobj_version = compat.VERSION

    @property
    def now(self) -> float:
        """Current virtual time in seconds."""
        return self._clock.now()

    def tick(self) -> None:
        """Advance one tick period (``autoTickPeriod``) of virtual time."""
        self._run_events(self.now + self.tick_interval)

    def run_for(self, seconds: float) -> None:
        """Advance ``seconds`` of virtual time, running everything that falls due."""
        self._run_events(self.now + _check_duration("seconds", seconds))

    def run_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Run until ``predicate()`` holds (checked after every event); False if ``timeout`` passes first."""
        return self._run_events(self.now + _check_duration("timeout", timeout), predicate)

    # --- observation -----------------------------------------------------------------------
    @property
    def node_ids(self) -> List[str]:
        """Ids of every node in the cluster, voters and read-only, up or crashed (not removed)."""
        return sorted(i for i, s in self._slots.items() if not s.removed)

    @property
    def voter_ids(self) -> List[str]:
        return [i for i in self.node_ids if self._slots[i].voter]

    def up_ids(self) -> List[str]:
        return [i for i in self.node_ids if self._slots[i].obj is not None]

    def _slot(self, node_id: str, arg: str = "node_id") -> _Slot:
        slot = self._slots.get(node_id)
        if slot is None or slot.removed:
            raise ValueError(f"{arg} must be one of {self.node_ids}, got {node_id!r}")
        return slot

    def is_up(self, node_id: str) -> bool:
        return self._slot(node_id).obj is not None

    def node_dir(self, node_id: str) -> Path:
        """The directory holding ``node_id``'s journal (``journal``, ``journal.meta``) and dump (``dump``)."""
        return self._slot(node_id).dir

    def incarnation(self, node_id: str) -> int:
        return self._slot(node_id).incarnation

    def node(self, node_id: str):
        """The live pysyncobj object of ``node_id`` (None while crashed); for reading, not steering."""
        return self._slot(node_id).obj

    def state(self, node_id: str) -> NodeState:
        """What ``node_id`` looks like now (read-only view, see :class:`~harness.state.NodeState`)."""
        return self._observe(self._slot(node_id), consume=False)

    def _observe(self, slot: _Slot, consume: bool) -> NodeState:
        if slot.obj is None:
            return crashed_state(slot.id, slot.incarnation, slot.voter)
        return compat.observe(slot.obj, slot.id, slot.incarnation, slot.voter, consume=consume)

    def observe(self) -> Tuple[NodeState, ...]:
        """Every node's state, consuming the log-change marks: the invariants' incremental feed."""
        return tuple(self._observe(self._slots[i], consume=True) for i in self.node_ids)

    def leader(self) -> Optional[str]:
        """The up node in leader role with the highest term, or None."""
        best = None
        for node_id in self.up_ids():
            obj = self._slots[node_id].obj
            if compat.role(obj) == "leader" and (best is None or obj.raftCurrentTerm > best[0]):
                best = (obj.raftCurrentTerm, node_id)
        return None if best is None else best[1]

    def wait_leader(self, timeout: float = 30.0) -> str:
        """Run until some node is leader and return its id; TimeoutError if none within ``timeout``."""
        if not self.run_until(lambda: self.leader() is not None, timeout):
            raise TimeoutError(f"no leader elected within {timeout} virtual seconds; "
                               f"up: {self.up_ids()}, filters on: {self._filtered_nodes()}")
        return self.leader()

    def _filtered_nodes(self) -> List[str]:
        return [i for i in self.node_ids if any(self._net.filters(i))]

    def trace_digest(self) -> str:
        """SHA-256 over every delivered message and its delivery time, in order."""
        return self._net.trace_digest()

    def record_messages(self) -> None:
        """Keep every delivered message from now on, for :meth:`take_message_log`."""
        if self._net.log is None:
            self._net.log = []

    def take_message_log(self) -> List[Dict[str, Any]]:
        """Messages delivered since the last call (needs :meth:`record_messages`)."""
        log = self._net.log or []
        if self._net.log is not None:
            self._net.log = []
        return log

    def filters(self, node_id: str):
        """(send chain, receive chain) currently installed on ``node_id``."""
        self._slot(node_id)
        return self._net.filters(node_id)

    @property
    def recent_messages(self):
        """The last messages delivered, as (virtual time, Envelope)."""
        return list(self._net.recent)

    @property
    def messages_delivered(self) -> int:
        return self._net.delivered

    # --- clients ---------------------------------------------------------------------------
    def call(self, method: str, key: Any, *args: Any, via: Optional[str] = None,
             consumer: Optional[str] = None) -> Operation:
        """Propose ``method(key, *args)`` of the replicated object through ``via`` (default: the leader).

        Any ``@replicated`` method of ``node_class`` works; the operation is
        recorded with ``kind=method`` and ``value`` the argument (a tuple for
        several), and its return value lands on ``result``.  Returns at once.

        With ``consumer=name`` it proposes ``method(*args)`` of that consumer
        instead (a ``@replicated`` method, or ``ReplLockManager.tryAcquire`` /
        ``release``); ``key`` is only the history key the operation is filed
        under (one per object, for a per-object check) and ``value`` is ``args``.
        """
        if consumer is not None:
            return self._invoke(method, method, key, args, tuple(args), via, consumer)
        value = args[0] if len(args) == 1 else (tuple(args) or None)
        return self._invoke(method, method, key, args, value, via)

    def _consumer_set(self) -> Consumers:
        if self.consumers is None:
            raise ValueError("consumer given, but this Cluster was built without consumers=")
        return self.consumers

    def _invoke(self, kind: str, method_name: str, key: Any, args: tuple, value: Any,
                via: Optional[str], consumer: Optional[str] = None) -> Operation:
        via = self._client_target(via)
        slot = self._slots[via]
        if consumer is not None:
            self._consumer_set().check_call(consumer, method_name)
        op = self.history.invoke(kind, key, value, via, self.now)
        obj = slot.obj
        if obj is None:
            self._finish(op, FAILED, "NODE_DOWN")
            return op
        method = getattr(obj if consumer is None else self.consumers.get(via, consumer), method_name, None)
        if consumer is None and (method is None or not getattr(method, "replicated", False)):
            raise ValueError(f"method must be a @replicated method of {type(obj).__name__}, got {method_name!r}")

        def on_result(result: Any, error: int) -> None:
            settle(op, obj, result, error, self._finish)

        call_args = args if consumer is not None else (key,) + tuple(args)
        with self._active():
            self._run_on(via, f"client {method_name}", lambda: method(*call_args, callback=on_result))
        return op

    def local_read(self, method: str, key: Any, *args: Any, via: Optional[str] = None, consumer: str) -> Operation:
        """Call local (not replicated) ``method(*args)`` of ``consumer`` on ``via``'s replica, now.

        Not a read through the log: a lagging or cut-off node answers from its
        stale state.  Recorded at once, flagged by its kind ``local_<method>``
        (``local_get``, ``local_len``), with ``value`` the args, ``result`` a
        copy of the answer and ``index`` the last log entry ``via`` had applied.
        """
        via = self._client_target(via)
        self._consumer_set().check_local(consumer, method)
        op = self.history.invoke(local_kind(method), key, tuple(args), via, self.now)
        obj = self._slots[via].obj
        if obj is None:
            self._finish(op, FAILED, "NODE_DOWN")
            return op
        try:
            with self._active():  # e.g. ReplLockManager.isAcquired reads the clock
                op.result = self.consumers.read(via, consumer, method, args)
        except Exception as e:
            self._finish(op, FAILED, type(e).__name__)
            raise
        op.index = obj.raftLastApplied
        self._finish(op, OK, None)
        return op

    def consumer(self, node_id: str, name: str):
        """Consumer ``name`` of ``node_id``'s live incarnation (None while crashed); for reading, not steering."""
        slot = self._slot(node_id)
        return None if slot.obj is None else self._consumer_set().get(node_id, name)

    def _finish(self, op: Operation, outcome: str, reason: Optional[str]) -> None:
        self.history.finish(op, outcome, reason, self.now)

    def put(self, key: Any, value: Any, via: Optional[str] = None) -> Operation:
        """Propose a write through ``via`` (default: the leader); returns its history entry at once."""
        return self._invoke(WRITE, "set", key, (value,), value, via)

    def get(self, key: Any, via: Optional[str] = None) -> Operation:
        """Propose a read through the log (linearizable); the value lands on the operation."""
        return self._invoke(READ, "get", key, (), None, via)

    def _must(self, propose: Callable[[str], Operation], what: str, timeout: float,
              attempt_timeout: float = 5.0) -> Operation:
        """Propose through the current leader until one attempt commits.

        An attempt can stall for good (a deposed leader appended it at an
        index the new leader never reaches, so pysyncobj never calls back), so
        each one gets ``attempt_timeout`` before the next is made.
        """
        deadline = self.now + timeout
        last = None
        while self.now < deadline:
            if self.leader() is None and not self.run_until(lambda: self.leader() is not None, deadline - self.now):
                break
            attempt = last = propose(self.leader())
            self.run_until(lambda: attempt.outcome != PENDING, min(attempt_timeout, deadline - self.now))
            if attempt.outcome == OK:
                return attempt
            self.run_for(min(self.tick_interval, max(deadline - self.now, 0)))
        raise AssertionError(f"{what} did not commit within {timeout} virtual seconds; last attempt: {last}")

    def must_put(self, key: Any, value: Any, timeout: float = 30.0) -> Operation:
        """Write through the leader, retrying until committed; AssertionError after ``timeout``."""
        return self._must(lambda via: self.put(key, value, via), f"write {key!r}", timeout)

    def must_get(self, key: Any, timeout: float = 30.0) -> Any:
        """Linearizable read through the leader, retrying until it commits."""
        return self._must(lambda via: self.get(key, via), f"read {key!r}", timeout).value

    def must_call(self, method: str, key: Any, *args: Any, timeout: float = 30.0,
                  consumer: Optional[str] = None) -> Operation:
        """:meth:`call` through the leader, retrying until one attempt commits."""
        return self._must(lambda via: self.call(method, key, *args, via=via, consumer=consumer),
                          f"{method} {key!r}", timeout)

    # --- faults ----------------------------------------------------------------------------
    def add_send_filter(self, node_id: str, f: Filter) -> None:
        self._net.add_filter(node_id, "send", f)

    def add_recv_filter(self, node_id: str, f: Filter) -> None:
        self._net.add_filter(node_id, "recv", f)

    def add_send_filter_factory(self, factory: FilterFactory) -> None:
        """Install ``factory``'s filters on every node's send side (and on nodes added later)."""
        self._factories.append(factory)
        for node_id in self.node_ids:
            for f in factory.generate(node_id, self.node_ids):
                self._net.add_filter(node_id, "send", f)

    def clear_all_filters(self) -> None:
        """Heal: remove every filter on every node (connections come back after ``reconnect_delay``)."""
        self._factories.clear()
        self._net.clear_filters()

    heal = clear_all_filters

    def clear_filters(self, node_id: str) -> None:
        self._slot(node_id)
        self._net.clear_filters(node_id)

    def crash(self, node_id: str) -> None:
        """Kill ``node_id`` without any shutdown: memory is lost, its journal and dump files stay."""
        slot = self._slot(node_id)
        if slot.obj is None:
            raise ValueError(f"node_id {node_id!r} is already crashed")
        compat.close_files(slot.obj)
        self.storage.on_crash(node_id)
        slot.obj = None
        slot.timer_gen += 1
        self._net.node_down(node_id)
        self.stats["crashes"] += 1
        for op in self.history.pending():
            if op.via == node_id:
                self._finish(op, UNKNOWN, "PROPOSER_CRASHED")

    def restart(self, node_id: str) -> None:
        """Start a new incarnation of a crashed node from its journal and dump files."""
        slot = self._slot(node_id)
        if slot.obj is not None:
            raise ValueError(f"node_id {node_id!r} is up; crash it first")
        with self._active():
            self._start(node_id, [p for p in self._members() if p != node_id])
        self.stats["restarts"] += 1

    def force_snapshot(self, node_id: str) -> None:
        """Ask ``node_id`` to compact its log now (the dump is written on its next ticks)."""
        slot = self._slot(node_id)
        if slot.obj is None:
            raise ValueError(f"node_id {node_id!r} is crashed; restart it first")
        slot.obj.forceLogCompaction()
        self.stats["snapshots_forced"] += 1

    # --- membership ------------------------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        n = 1
        while f"{prefix}{n}" in self._slots:
            n += 1
        return f"{prefix}{n}"

    def _change_membership(self, kind: str, node_id: str, via: Optional[str]) -> MembershipChange:
        via = via or self.leader()
        if via is None:
            raise ValueError("membership changes go through the leader, and there is none; wait_leader() first")
        obj = self._slot(via, "via").obj
        change = MembershipChange(kind, node_id, via, self.now)
        self.membership_changes.append(change)

        def on_result(result: Any, error: int) -> None:
            change.complete = self.now
            if error == FAIL_REASON.SUCCESS:
                change.outcome = OK
                if kind == "remove":
                    self._retire(node_id)
                else:
                    self._slots[node_id].member = True
            else:
                change.outcome = UNKNOWN if error in _UNKNOWN_REASONS else FAILED
                change.reason = _reason_name(error)
                if kind == "add" and change.outcome == FAILED:
                    self._retire(node_id)  # never appended (or discarded): it will never be a member

        call = obj.addNodeToCluster if kind == "add" else obj.removeNodeFromCluster
        with self._active():
            self._run_on(via, f"{kind} node {node_id}", lambda: call(SimNode(node_id), callback=on_result))
        return change

    def _members(self) -> List[str]:
        return [i for i in self.voter_ids if self._slots[i].member]

    def _retire(self, node_id: str) -> None:
        slot = self._slots[node_id]
        if slot.obj is not None:
            compat.close_files(slot.obj)
            slot.obj = None
        slot.removed = True
        self._net.forget(node_id)

    def add_node(self, via: Optional[str] = None) -> str:
        """Start a new voter and propose adding it through the leader; returns its id."""
        node_id = self._next_id("n")
        peers = self._members()
        with self._active():
            self._new_slot(node_id, voter=True)
            self._apply_factories(node_id)
            self._start(node_id, peers)
        self._change_membership("add", node_id, via)
        return node_id

    def remove_node(self, node_id: str, via: Optional[str] = None) -> MembershipChange:
        """Propose removing voter ``node_id``; once committed the node is stopped and forgotten."""
        if not self._slot(node_id).voter:
            raise ValueError(f"node_id {node_id!r} is read-only; only voters can be removed")
        return self._change_membership("remove", node_id, via)

    def add_readonly_node(self) -> str:
        """Start a read-only node (a learner) that replicates the log but never votes."""
        node_id = self._next_id("r")
        with self._active():
            self._new_slot(node_id, voter=False)
            self._apply_factories(node_id)
            self._start(node_id, self._members())
        return node_id

    def _apply_factories(self, node_id: str) -> None:
        """A node joining later gets its share of every cluster-wide fault still installed."""
        for factory in self._factories:
            for f in factory.generate(node_id, self.node_ids):
                self._net.add_filter(node_id, "send", f)
