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

import random
import shutil
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pysyncobj import SyncObj, SyncObjConf

from harness.util import node_dir_base, owned_dir

from harness.sim import clock as _clock
from harness.adapter import batteries as _batteries
from harness.adapter import observe as compat
from harness.contract import ClusterBase, NodeError
from harness.adapter.events import EventTap
from harness.sim.events import EventQueue
from harness.sim.faults import FaultApi, LeadershipTransfer
from harness.wire.filters import Filter, FilterFactory
from harness.wire.messages import Envelope
from harness.history import History
from harness.kv import KVStore
from harness.sim.consumers import ConsumerFactory, Consumers
from harness.sim.network import SimNetwork, SimNode
from harness.check.events import Event
from harness.sim.pysyncobj_log import PysyncobjLog
from harness.state import NodeState
from harness.sim.clients import ClientApi
from harness.sim.membership import Membership, MembershipChange
from harness.sim.storage import StorageFaults
from harness.sim.ticks import TickSkipping

__all__ = ["Cluster", "MembershipChange", "NodeError"]


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
        self.clock: Optional[_clock.NodeClock] = None  # its own clock once its rate was skewed
        self.draining = False  # handling what arrived while it was paused
        # The periodic tick grid (skip_idle_ticks): when its last tick ended, when its next one is due.
        self.anchor = 0.0
        self.next_tick = 0.0


class Cluster(ClientApi, TickSkipping, Membership, FaultApi, ClusterBase):
    """A simulated pysyncobj cluster.  Use as a context manager, or call :meth:`close`.

    ``node_class`` (a ``SyncObj`` subclass) defaults to :class:`~harness.kv.KVStore`.
    ``consumers``, a callable taking a node id, gives each node incarnation its
    ``SyncObjConsumer`` objects (e.g. pysyncobj's batteries) as ``{name: consumer}``
    or a list; the nodes are then plain ``SyncObj`` unless ``node_class`` says
    otherwise, and clients reach a consumer with ``call(..., consumer=name)``
    and :meth:`local_call`.  See :mod:`harness.sim.consumers`.
    """

    #: SyncObjConf settings the harness owns: key -> why it cannot be set.
    _FORBIDDEN_CONF = {
        "autoTick": "the harness ticks nodes itself",
        "useFork": "a forked dump writer is nondeterministic",
        "journalFile": "the harness gives every node its own files",
        "fullDumpFile": "the harness gives every node its own files",
    }
    #: Where the harness' defaults differ from pysyncobj's: compaction only when forced.
    _DEFAULT_CONF = dict(dynamicMembershipChange=True, logCompactionMinEntries=10 ** 9,
                         logCompactionMinTime=10 ** 9)

    def __init__(self, nodes: int = 3, seed: int = 0, network: str = "fifo", *,
                 node_class: Optional[type] = None, consumers: Optional[ConsumerFactory] = None,
                 latency: Tuple[float, float] = (0.002, 0.02),
                 reconnect_delay: float = 0.2, read_step: float = 1e-6, base_dir: Optional[str] = None,
                 record_events: bool = False, old_connections_readable: bool = False,
                 skip_idle_ticks: bool = False, **pysyncobj_conf: Any) -> None:
        if node_class is None:
            node_class = KVStore if consumers is None else SyncObj
        self._conf = self.check_arguments(nodes, seed, network, node_class, pysyncobj_conf)
        #: The nodes' consumers (None without ``consumers=``); ``.lock_transitions`` for lock managers.
        self.consumers = None if consumers is None else Consumers(consumers)
        self.seed = seed
        self.network_model = network
        self._node_class = node_class
        self.tick_interval = float(self._conf.get("autoTickPeriod", 0.05))
        if not isinstance(skip_idle_ticks, bool):
            raise ValueError(f"skip_idle_ticks must be a bool, got {skip_idle_ticks!r}")
        #: Skip the periodic ticks at which no pysyncobj timer can fire (see _next_tick_at).
        self.skip_idle_ticks = skip_idle_ticks
        self._clock = _clock.VirtualClock(read_step=read_step)
        self._node_rng = random.Random(seed)
        self._activation = _clock.activate(self._clock, self._node_rng)  # stateless: one serves every step
        self._net_rng = self._network_rng(seed)
        self._events = EventQueue()
        self._slots: Dict[str, _Slot] = {}
        self._factories: List[FilterFactory] = []
        self.history = History()
        self.membership_changes: List[MembershipChange] = []
        self.leadership_transfers: List[LeadershipTransfer] = []
        self.node_errors: List[NodeError] = []
        self.stats: Dict[str, int] = {"ticks": 0, "crashes": 0, "restarts": 0, "snapshots_forced": 0}
        self._triggers: List[Tuple[float, Callable[[], bool], Callable[[], None]]] = []  # see when()
        self._root: Optional[Path] = None
        self.storage: Optional[StorageFaults] = None  # storage failpoints, see harness.sim.storage
        self._closed = False
        # record_events: every node's changes as they happen, for take_events() (harness.adapter.events)
        self._tap: Optional[EventTap] = EventTap(self._clock.now) if record_events else None
        self._running_node: Optional[str] = None  # the node whose pysyncobj code is executing
        #: What pysyncobj logged while running this cluster's nodes (see harness.sim.pysyncobj_log).
        self.pysyncobj_log = PysyncobjLog(lambda: self._running_node, self._clock.now)
        _clock.acquire()
        if self.consumers is not None:
            _batteries.acquire()
        try:
            self.pysyncobj_log.open()
            self._root = owned_dir(base_dir or node_dir_base())
            self.storage = StorageFaults(self._root, self._events.at, self._clock.now, self.crash)
            self._net = SimNetwork(network, self._events, self._clock, self._net_rng, latency,
                                   reconnect_delay, self._run_on, self._after_delivery,
                                   old_connections_readable=old_connections_readable)
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
    @classmethod
    def check_arguments(cls, nodes: Any, seed: Any, network: Any, node_class: Any,
                        pysyncobj_conf: Dict[str, Any]) -> Dict[str, Any]:
        """ValueError naming the first bad argument, before anything is started (the ``cluster`` fixture
        of :mod:`harness.fuzz.plugin` reports it as one line); else the nodes' SyncObjConf settings."""
        cls._check_cluster_args(nodes, seed, network)
        if not (isinstance(node_class, type) and issubclass(node_class, SyncObj)):
            raise ValueError(f"node_class must be a pysyncobj.SyncObj subclass (e.g. harness.KVStore), "
                             f"got {node_class!r}")
        return cls._check_pysyncobj_conf(pysyncobj_conf, cls._FORBIDDEN_CONF, cls._DEFAULT_CONF)

    def close(self) -> None:
        """Drop every node, delete every temp dir, give pysyncobj its own clock back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.pysyncobj_log.close()
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
        return self._activation

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
        previous, self._running_node = self._running_node, node_id
        if slot.clock is not None:
            _clock.route(slot.clock.read)
        try:
            obj = self._node_class(self_node, others, self._node_conf(slot), nodeClass=SimNode,
                                   transportClass=self._net.transport_factory(node_id), **extra)
        except Exception:
            self._record_error(node_id, "starting", traceback.format_exc())
            raise
        finally:
            self._running_node = previous
            if slot.clock is not None:
                _clock.route(self._clock.read)
        if self.consumers is not None:
            self.consumers.attach(node_id, slot.incarnation, obj, self._clock.now)
        for thread in threads:
            self._events.at(self._clock.now() + thread.wake_after, self._drive, slot, slot.incarnation, thread)
        if self._tap is None:
            compat.watch_journal(obj)
        else:
            self._tap.attach(node_id, slot.incarnation, obj)  # its journal wrapper is a WatchedJournal too
        self.storage.attach(node_id, obj)
        slot.obj = obj
        self._net.node_up(node_id)
        slot.next_tick = self._clock.now() + self._net_rng.uniform(0, self.tick_interval)
        self._schedule_tick(slot, slot.next_tick)

    # --- the event loop --------------------------------------------------------------------
    def _record_error(self, node_id: str, activity: str, tb: str) -> None:
        slot = self._slots[node_id]
        self.node_errors.append(NodeError(node_id, slot.incarnation, activity, self._clock.now(), tb))

    def _run_on(self, node_id: str, activity: str, thunk: Callable[[], None]) -> None:
        """Run pysyncobj code for one node; an exception becomes a NodeError, never escapes or hides.
        A paused node runs it when it resumes; a node with its own clock reads that one meanwhile."""
        if self._net.is_paused(node_id):
            self._net.defer(node_id, lambda: self._run_on(node_id, activity, thunk))
            return
        own = self._slots[node_id].clock
        if own is not None:
            _clock.route(own.read)
        tap = self._tap
        if tap is not None:
            env = self._net.delivering
            if env is not None and env.dst == node_id and not tap.active:
                saved = tap.begin("message", env)
            else:
                saved = tap.begin(activity)
        previous, self._running_node = self._running_node, node_id
        try:
            thunk()
        except Exception:
            self._record_error(node_id, activity, traceback.format_exc())
        finally:
            self._running_node = previous
        if tap is not None:
            tap.end(node_id, saved)
        if own is not None:
            _clock.route(self._clock.read)
        self._net.flush(node_id)
        if self.skip_idle_ticks:
            env = self._net.delivering
            slot = self._slots[node_id]
            if env is None or env.dst != node_id or slot.draining:  # else the tick after a message follows
                self._wake(slot)

    def _tick(self, slot: _Slot) -> None:
        obj = slot.obj
        self.stats["ticks"] += 1
        own = slot.clock
        if own is not None:
            _clock.route(own.read)
        tap = self._tap
        if tap is not None:
            env = self._net.delivering  # the tick pysyncobj runs as soon as a message arrived
            saved = tap.begin("tick", env if env is not None and env.dst == slot.id else None)
        previous, self._running_node = self._running_node, slot.id
        try:  # _run_on inlined: this is the hottest path of the simulation
            obj.doTick(0.0)
        except Exception:
            self._record_error(slot.id, "tick", traceback.format_exc())
        self._running_node = previous
        if tap is not None:
            tap.end(slot.id, saved)
        if own is not None:
            _clock.route(self._clock.read)
        self._net.flush(slot.id)
        if slot.obj is obj:
            self._schedule_next_tick(slot, obj)

    def _after_delivery(self, node_id: str) -> None:
        # pysyncobj's poller returns when a message arrives and the next tick runs at once.
        slot = self._slots[node_id]
        if slot.obj is not None and not slot.draining:  # a resumed node ticks once its backlog is read
            due = self._idle_until(slot, slot.obj)
            if due is not None and due > self._clock.now():
                self._schedule_next_tick(slot, slot.obj, due)  # a tick now would only read the clock
            else:
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
                if self._triggers:
                    self._fire_triggers()
            self._clock.advance_to(until)
            return stop is not None and stop()

    @property
    def records_events(self) -> bool:
        """Whether this cluster was built with ``record_events=True`` (:meth:`take_events` works)."""
        return self._tap is not None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run (nodes gone, temp dir deleted)."""
        return self._closed

    @property
    def now(self) -> float:
        """Current virtual time in seconds."""
        return self._clock.now()

    def tick(self) -> None:
        """Advance one tick period (``autoTickPeriod``) of virtual time."""
        self._run_events(self.now + self.tick_interval)

    def run_for(self, seconds: float) -> None:
        """Advance ``seconds`` of virtual time, running everything that falls due."""
        self._run_events(self.now + self._check_seconds("seconds", seconds))

    def run_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Run until ``predicate()`` holds (checked after every event); False if ``timeout`` passes first."""
        return self._run_events(self.now + self._check_seconds("timeout", timeout), predicate)

    def when(self, predicate: Callable[[], bool], action: Callable[[], None], within: float) -> None:
        """Run ``action()`` once, at the first instant in the next ``within`` virtual seconds at which
        ``predicate()`` holds (now, or after any event, whoever runs the cluster meanwhile).  A fault
        timed to a window that opens and closes between two steps needs no step to land in it."""
        if not callable(predicate) or not callable(action):
            raise ValueError(f"predicate and action must be callables, got {predicate!r} and {action!r}")
        self._triggers.append((self.now + self._check_seconds("within", within), predicate, action))
        with self._active():
            self._fire_triggers()

    def _fire_triggers(self) -> None:
        now, armed, self._triggers = self._clock.now(), self._triggers, []
        for entry in armed:
            deadline, predicate, action = entry
            if now > deadline:
                continue
            if predicate():
                action()
            else:
                self._triggers.append(entry)

    # --- observation -----------------------------------------------------------------------
    @property
    def node_ids(self) -> List[str]:
        """Ids of every node in the cluster, voters and read-only, up or crashed (not removed)."""
        return sorted(i for i, s in self._slots.items() if not s.removed)

    @property
    def voter_ids(self) -> List[str]:
        return [i for i in self.node_ids if self._slots[i].voter]

    def _slot(self, node_id: str, arg: str = "node_id") -> _Slot:
        slot = self._slots.get(node_id)
        if slot is None or slot.removed:
            raise ValueError(f"{arg} must be one of {self.node_ids}, got {node_id!r}")
        return slot

    def connected(self, a: str, b: str) -> bool:
        """Does ``a``'s pysyncobj hold a connection to ``b`` (told by its transport, not yet told it closed)?"""
        self._slot(a, "a")
        self._slot(b, "b")
        return self._net.connected(a, b)

    def node_dir(self, node_id: str) -> Path:
        """The directory holding ``node_id``'s journal (``journal``, ``journal.meta``) and dump (``dump``)."""
        return self._slot(node_id).dir

    def node(self, node_id: str) -> Any:
        """The live pysyncobj object of ``node_id`` (None while crashed); for reading, not steering."""
        return self._slot(node_id).obj

    def state(self, node_id: str) -> NodeState:
        """What ``node_id`` looks like now (read-only view, see :class:`~harness.state.NodeState`)."""
        return self._observe(self._slot(node_id), consume=False)

    def observe(self) -> Tuple[NodeState, ...]:
        """Every node's state, consuming the log-change marks: the invariants' incremental feed."""
        return tuple(self._observe(self._slots[i], consume=True) for i in self.node_ids)

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

    def take_events(self) -> List[Event]:
        """Every node's events (harness.check.events) since the last call, in the order they happened;
        needs ``record_events=True``."""
        if self._tap is None:
            raise RuntimeError("this Cluster records no events: build it with record_events=True")
        return self._tap.take()

    def filters(self, node_id: str) -> Tuple[List[Filter], List[Filter]]:
        """(send chain, receive chain) currently installed on ``node_id``."""
        self._slot(node_id)
        return self._net.filters(node_id)

    @property
    def recent_messages(self) -> List[Tuple[float, Envelope]]:
        """The last messages delivered, as (virtual time, Envelope)."""
        return list(self._net.recent)

    @property
    def messages_delivered(self) -> int:
        return self._net.delivered

    # --- clients ---------------------------------------------------------------------------
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
        if self._tap is not None:
            self._tap.detach(node_id)
        slot.obj = None
        slot.timer_gen += 1
        self._net.node_down(node_id)
        self.stats["crashes"] += 1
        self._abandon_operations(node_id, "PROPOSER_CRASHED")

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
        if self.skip_idle_ticks:
            self._wake(slot)
        self.stats["snapshots_forced"] += 1

    def _apply_factories(self, node_id: str) -> None:
        """A node joining later gets its share of every cluster-wide fault still installed."""
        for factory in self._factories:
            for f in factory.generate(node_id, self.node_ids):
                self._net.add_filter(node_id, "send", f)
