"""The Raft fuzzing state machine: faults and client operations as Hypothesis rules.

Subclass :class:`RaftMachine` to point it at another replicated object or
network model; ``properties/`` holds the concrete test cases.  Rule arguments
are plain values (node ids, sets of ids, rates), so a shrunk counterexample
prints as code that can be pasted into a test.  A rule naming a node the
cluster does not have (yet) does nothing: that keeps every generated step
valid while node ids stay readable.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from hypothesis import event, strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (INITIALIZE_RULE_MARKER, RULE_MARKER, RuleBasedStateMachine, initialize,
                                 invariant, precondition, rule)

from harness.sim.cluster import Cluster
from harness.wire.filters import (DelayFilter, DropPacketFilter, DuplicateFilter, HoldFilter, MessageTypeFilter,
                      ReorderFilter)
from harness.history import PENDING, UNKNOWN
from harness.check.answers import follower_clients_answered
from harness.check.invariants import LivenessViolation, SafetyChecker, SafetyViolation, Violation
from harness.kv import KVStore
from harness.check.linearizability import LinearizabilityResult, Model, SearchTooLarge, check_linearizable
from harness.wire.messages import release_message_types
from harness.fuzz.recording import Recorder
from harness.fuzz import guidance, stats
from harness.adapter.patching import installed as installed_patches
from harness.environment import REPORT_ENV
from harness.report.counterexample import write_counterexample
from harness.report.text import describe

if TYPE_CHECKING:
    from harness.fuzz.replay import ReplayRun

NODE_IDS = ("n1", "n2", "n3", "n4", "n5", "n6", "n7", "r1", "r2")
KEYS = ("a", "b", "c")
#: At most this many writes a second while the machine waits for clients to be answered.
_WRITES_PER_SECOND = 100

node_ids = st.sampled_from(NODE_IDS)
targets = st.sampled_from(("leader",) + NODE_IDS)
directions = st.sampled_from(("send", "recv"))
message_types = st.sampled_from(sorted(release_message_types()))


def note(what: str) -> None:
    """Hypothesis ``event`` that is harmless outside a test (e.g. when steps are replayed by hand)."""
    stats.noted(what)
    if currently_in_test_context():
        event(what)


def _recorded(fn: Callable) -> Callable:
    """Wrap a rule so the machine's recorder sees its name and arguments before it runs."""
    if getattr(fn, "_raft_recorded", False):
        return fn

    @functools.wraps(fn)
    def step(machine, **kwargs):
        machine.recorder.begin(fn.__name__, kwargs, machine.cluster.now if machine.cluster else 0.0)
        return fn(machine, **kwargs)

    step._raft_recorded = True
    return step


def _record_rules(cls: type) -> None:
    """Record every rule of ``cls``, whether Hypothesis runs it or a replayed test calls it."""
    for name, value in list(vars(cls).items()):
        for marker in (RULE_MARKER, INITIALIZE_RULE_MARKER):
            r = getattr(value, marker, None)
            if r is not None:
                r.function = _recorded(r.function)
                setattr(cls, name, _recorded(value))


@dataclasses.dataclass(frozen=True)
class Failure:
    """The last property a machine broke in this process, as data: what triage and the minimiser need.

    Hypothesis replays the failing example last before it reports (the shrunk one, under a profile that
    shrinks), so after a failing test this is the counterexample's record (see harness.fuzz.outcomes).
    """

    machine: type
    recorder: Recorder  # the failed example's; it records nothing more once the example failed
    patches: Tuple[str, ...]
    invariants: Tuple[str, ...]

    @property
    def steps(self) -> List[Dict[str, Any]]:
        """The recorded steps, serialised only when asked: during shrinking most failures never are."""
        return self.recorder.to_json()


#: Set by every failing example; read (and cleared) by the pytest plugin when a test fails.
last_failure: Optional[Failure] = None


class RaftMachine(RuleBasedStateMachine):
    """Client traffic and faults against a simulated pysyncobj cluster, Raft safety checked after every step.

    With ``RAFT_HARNESS_REPORT=DIR`` in the environment, a failing run writes
    ``DIR/counterexample.json`` (every step, node states, messages delivered);
    what stays is the last failing run Hypothesis makes: the one it reports (shrunk, if the profile shrinks).
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        _record_rules(cls)

    network = "fifo"
    node_class = KVStore
    #: Sequential model of one key of ``node_class`` for the linearizability check;
    #: None: each key is a register (``set``/``get``).
    model: Optional[Model] = None
    pysyncobj_conf: Dict[str, Any] = {}
    #: Options of the simulated cluster itself (e.g. ``old_connections_readable``), see :class:`Cluster`.
    cluster_options: Dict[str, Any] = {}
    #: Virtual seconds the cluster runs after each rule's action.
    step_time = 0.25
    #: Virtual seconds a healed, fully restarted cluster gets to elect a leader and commit a write.
    liveness_timeout = 60.0
    #: Virtual seconds that cluster then gets to answer every client operation still waiting
    #: (``clients_answered``, :mod:`harness.check.answers`): longer than pysyncobj's
    #: ``leaderFallbackTimeout`` (30 s by default), after which a deposed leader that hears from no
    #: majority steps down; until then it may hold its clients' commands.
    answer_timeout = 60.0
    #: Whether teardown checks ``clients_answered`` (on ``fifo`` only, see :meth:`teardown`); False for a
    #: machine that must stay green on pysyncobj releases with findings 6 and 22 unfixed.
    check_answers = True
    max_voters = 7
    max_readonly = 2
    #: Judge every event the cluster records (harness.check.stream) rather than the states sampled at
    #: the end of each step; False for a machine whose cluster records none (or to compare the two).
    stream_checks = True
    #: Measures of :mod:`harness.fuzz.guidance` reported to Hypothesis' ``target()`` at the end of each
    #: example, so the target phase steers toward examples that score high on them; () for none.
    guidance_targets: Tuple[str, ...] = guidance.DEFAULT_TARGETS

    def __init__(self) -> None:
        super().__init__()
        self.cluster: Optional[Cluster] = None
        self.checker = SafetyChecker(stream=self.stream_checks)
        self._cursor = 0
        self._next_value = 0
        self._holds: List[HoldFilter] = []
        self._failed = False
        #: Where a failing run writes ``counterexample.json`` (``RAFT_HARNESS_REPORT``); None: nowhere.
        self.report_dir: Optional[str] = os.environ.get(REPORT_ENV) or None
        self.recorder = Recorder(detailed=self.report_dir is not None)
        self._max_leader_term = 0
        self._last_leader: Optional[str] = None
        self._first_index: Dict[str, int] = {}
        self._installed: Dict[tuple, int] = {}
        self._highest_index = 0  # the highest log index any node was seen to hold (clients_answered)
        self.guidance = guidance.Guidance(self.guidance_targets)

    @classmethod
    def replay(cls, steps: Sequence[Dict[str, Any]], detailed: bool = True) -> "ReplayRun":
        """Run recorded steps (``counterexample.json``'s ``steps``) with this machine's own invariants
        after each; see :mod:`harness.fuzz.replay`."""
        from harness.fuzz.replay import replay_steps

        return replay_steps(cls, steps, detailed)

    @property
    def failed(self) -> bool:
        """Whether this example has broken a property (statistics, and invariants that stop checking)."""
        return self._failed

    @property
    def max_leader_term(self) -> int:
        """The highest term any node led in this example (statistics)."""
        return self._max_leader_term

    # --- setup and the safety net ------------------------------------------------------------
    @initialize(nodes=st.integers(*stats.node_range()), seed=st.integers(0, 2 ** 16))
    def start_cluster(self, nodes: int, seed: int) -> None:
        self.cluster = self.make_cluster(nodes, seed)
        # A CRITICAL line from pysyncobj is evidence: an event of the example, in the campaign statistics too.
        self.cluster.pysyncobj_log.on_critical = lambda line: note(f"pysyncobj critical: {line.gist}")
        if self.recorder.detailed:
            self.cluster.record_messages()
        note(f"cluster size {nodes}")

    def make_cluster(self, nodes: int, seed: int) -> Cluster:
        """The cluster under test; override to build it another way (e.g. with ``consumers=``)."""
        return Cluster(nodes, seed, self.network, node_class=self.node_class, record_events=self.stream_checks,
                       **self.cluster_options, **self.pysyncobj_conf)

    def _settle(self) -> None:
        """Background traffic, then let the cluster run: every step sees client load, whatever
        subset of rules Hypothesis' swarm testing enabled for this example."""
        leader = self.cluster.leader()
        if leader is not None:
            self.background_operation(leader)
        self.cluster.run_for(self.step_time)

    def background_operation(self, leader: str) -> None:
        """One client operation per step through the leader; override for another ``node_class``."""
        self.cluster.put(KEYS[self._next_value % len(KEYS)], self._value(), via=leader)

    def liveness_probe(self, timeout: float) -> None:
        """Commit one operation through the leader or raise AssertionError; override with ``model``."""
        self.cluster.must_put("liveness", self._value(), timeout=timeout)

    def _fail(self, exc: AssertionError) -> None:
        self._failed = True
        global last_failure
        last_failure = Failure(type(self), self.recorder, tuple(installed_patches()),
                               tuple(sorted({v.invariant for v in getattr(exc, "violations", ())}))
                               or (type(exc).__name__,))
        if self.recorder.detailed:
            self.recorder.end(self.cluster, [self.cluster.state(i) for i in self.cluster.node_ids])
        if self.report_dir:
            write_counterexample(self.report_dir, self, exc)
        raise exc

    @invariant()
    def raft_safety(self) -> None:
        """Election safety, vote safety, log matching, leader completeness, state machine safety,
        durability, no exception inside a node: see :mod:`harness.check.stream` (judged on every event of
        the step) and :mod:`harness.check.invariants`."""
        if self.cluster is None:
            return
        completed, self._cursor = self.cluster.history.completed_since(self._cursor)
        states = self.cluster.observe()
        events = self.cluster.take_events() if self.checker.stream else None
        self.recorder.end(self.cluster, states)
        self.guidance.step(states, events, self.cluster.history)
        try:
            self.checker.step(states, completed, self.cluster.node_errors, events)
        except SafetyViolation as v:
            self._fail(SafetyViolation(v.violations, describe(self.cluster)))
        self._note_milestones(states)

    def _note_milestones(self, states) -> None:
        """Statistics: which protocol events this example actually exercised."""
        for s in states:
            if s.is_leader and s.term > self._max_leader_term:
                self._max_leader_term = s.term
                note("election won")
                if self._last_leader not in (None, s.id):
                    note("leader changed")
                self._last_leader = s.id
            self._highest_index = max(self._highest_index, s.last_index)
            first = self._first_index.get(s.id, 1)
            if s.up and s.first_index > first:
                note("log compacted")
            if s.snapshots_installed > self._installed.get((s.id, s.incarnation), 0):
                note("snapshot installed")
            self._first_index[s.id] = s.first_index
            self._installed[(s.id, s.incarnation)] = s.snapshots_installed

    def teardown(self) -> None:
        if self.cluster is None:
            stats.example_done(self)
            return
        try:
            self.guidance.target()  # before the liveness check heals and restarts the cluster
            if not self._failed:
                self.recorder.begin("teardown", {}, self.cluster.now)
                self._check_liveness()
                # pysyncobj never resends a command: on a network that loses single messages
                # (unreliable) a client may rightly wait for good, on its own (TCP) contract not.
                waited = self._await_answers() if self.check_answers and self.network == "fifo" else None
                self.raft_safety()
                if waited is not None:
                    self._check_answered(*waited)
                self._check_linearizable()
        finally:
            stats.example_done(self)
            self.cluster.close()

    def _check_liveness(self) -> None:
        c = self.cluster
        c.clear_all_filters()
        for node_id in c.node_ids:
            if not c.is_up(node_id):
                c.restart(node_id)
        try:
            self.liveness_probe(self.liveness_timeout)
        except AssertionError as e:
            self._fail(LivenessViolation(
                f"liveness: healed cluster with every node up did not commit a write within "
                f"{self.liveness_timeout} virtual seconds ({e})\n{describe(c)}"))

    def _await_answers(self) -> Tuple[float, int]:
        """Run the live cluster until every waiting client operation is answered, or answer_timeout
        passes; the virtual seconds it ran, and the leader's commit index when it started.

        What still waits after a second gets writes through the leader every second (but not in the
        last quarter), enough for the leader's log to pass the highest index any node has held:
        pysyncobj answers a command whose entry a new leader overwrote only when the log reaches its
        index again, and a cluster in use gets there.
        """
        c = self.cluster
        start = c.now
        leader = c.leader()
        committed = c.state(leader).commit_index if leader is not None else 0
        deadline, quiet = start + self.answer_timeout, start + 0.75 * self.answer_timeout
        waiting = c.history.pending()

        def answered() -> bool:
            return all(op.outcome != PENDING for op in waiting)

        if waiting:
            c.run_until(answered, min(1.0, self.answer_timeout))
            waiting = c.history.pending()
        horizon = max([self._highest_index] + [c.state(n).last_index for n in c.up_ids()])
        while waiting and c.now < deadline:
            leader = c.leader()
            if leader is not None and c.now < quiet:
                behind = horizon - c.state(leader).last_index
                for _ in range(min(max(behind, 1), _WRITES_PER_SECOND)):
                    self.background_operation(leader)
            c.run_until(answered, min(1.0, deadline - c.now) if c.now < quiet else deadline - c.now)
            waiting = c.history.pending()
        return c.now - start, committed

    def _check_answered(self, waited: float, committed: int) -> None:
        c = self.cluster
        violations = follower_clients_answered([c.state(n) for n in c.up_ids()], c.history, committed, waited)
        if violations:
            self._fail(LivenessViolation(f"{violations[0]}\n{describe(self.cluster)}", violations))

    def _check_linearizable(self) -> None:
        self._judge_linearizable(lambda: check_linearizable(self.cluster.history, model=self.model))

    def _judge_linearizable(self, check: Callable[[], LinearizabilityResult]) -> None:
        """Fail on a history the checker finds not linearizable, and on one it cannot decide: that is
        no verdict on pysyncobj, but it must be seen (and recorded, replayed, triaged) like one."""
        try:
            result = check()
        except SearchTooLarge as e:
            self._fail(SafetyViolation([Violation("linearizability_undecided", (
                f"{e}; neither the log's order nor the search within its bound found a linearization, "
                f"and the search did not finish"))], describe(self.cluster)))
        if not result.ok:
            self._fail(SafetyViolation([Violation("linearizability", result.explanation)],
                                       describe(self.cluster)))

    # --- helpers -----------------------------------------------------------------------------
    def _value(self) -> int:
        self._next_value += 1
        return self._next_value

    def _present(self, node: str) -> bool:
        return node in self.cluster.node_ids

    def _up(self, node: str) -> bool:
        """Present and running: a removal that commits while a rule runs the cluster retires its node."""
        return self._present(node) and self.cluster.is_up(node)

    def _via(self, target: str) -> Optional[str]:
        if target == "leader":
            return self.cluster.leader()
        return target if self._present(target) else None

    # --- client operations ---------------------------------------------------------------------
    @rule(key=st.sampled_from(KEYS), via=targets)
    def write(self, key: str, via: str) -> None:
        """Write a value never written before, through the leader or any node (followers forward)."""
        node = self._via(via)
        if node is not None:
            self.cluster.put(key, self._value(), via=node)
            note("write")
        self._settle()

    @rule(key=st.sampled_from(KEYS), via=targets)
    def read(self, key: str, via: str) -> None:
        """A read through the log: it must see the latest committed write (linearizability)."""
        node = self._via(via)
        if node is not None:
            self.cluster.get(key, via=node)
            note("read")
        self._settle()

    # --- network faults ----------------------------------------------------------------------
    @rule(side=st.frozensets(node_ids, min_size=1))
    def partition(self, side: frozenset) -> None:
        """Split the cluster in two: ``side`` against everyone else."""
        a = sorted(n for n in side if self._present(n))
        b = [n for n in self.cluster.node_ids if n not in side]
        if a and b:
            self.cluster.partition(a, b)
            note("fault: partition")
        self._settle()

    @rule(bridge=node_ids, side=st.frozensets(node_ids, min_size=1))
    def partition_with_bridge(self, bridge: str, side: frozenset) -> None:
        """Two sides that cannot talk, and one node that still sees both."""
        if self._present(bridge):
            a = sorted(n for n in side if self._present(n) and n != bridge)
            b = [n for n in self.cluster.node_ids if n not in side and n != bridge]
            if a and b:
                self.cluster.partition(a, b)
                note("fault: bridge partition")
        self._settle()

    @rule(node=node_ids)
    def isolate(self, node: str) -> None:
        if self._present(node):
            self.cluster.isolate_node(node)
            note("fault: isolate")
        self._settle()

    @rule()
    def heal(self) -> None:
        """Remove every filter: partitions, drops, delays, holds (held messages are delivered)."""
        self.cluster.clear_all_filters()
        self._holds.clear()
        self._settle()

    @rule(node=node_ids, direction=directions, rate=st.sampled_from((0.1, 0.3, 1.0)))
    def drop_messages(self, node: str, direction: str, rate: float) -> None:
        if self._present(node):
            self._add_filter(node, direction, DropPacketFilter(rate))
            note("fault: drop")
        self._settle()

    @rule(node=node_ids, direction=directions, seconds=st.sampled_from((0.05, 0.3, 1.5)))
    def delay_messages(self, node: str, direction: str, seconds: float) -> None:
        if self._present(node):
            self._add_filter(node, direction, DelayFilter(seconds))
            note("fault: delay")
        self._settle()

    @rule(node=node_ids, direction=directions, kind=message_types)
    def block_message_type(self, node: str, direction: str, kind: str) -> None:
        if self._present(node):
            self._add_filter(node, direction, MessageTypeFilter([kind]))
            note("fault: block type")
        self._settle()

    @rule(node=node_ids, direction=directions, kind=message_types)
    def hold_messages(self, node: str, direction: str, kind: str) -> None:
        """Hold messages of one type (in fifo: and everything behind them) until released."""
        if self._present(node):
            hold = HoldFilter([kind])
            self._add_filter(node, direction, hold)
            self._holds.append(hold)
            note("fault: hold")
        self._settle()

    @precondition(lambda self: bool(self._holds))
    @rule()
    def release_held(self) -> None:
        for hold in self._holds:
            hold.release()
        note("fault: release")
        self._settle()

    def _add_filter(self, node: str, direction: str, f) -> None:
        if direction == "send":
            self.cluster.add_send_filter(node, f)
        else:
            self.cluster.add_recv_filter(node, f)

    # --- node faults -------------------------------------------------------------------------
    @rule(node=node_ids)
    def crash(self, node: str) -> None:
        """Kill a node without shutdown; journal and dump files survive."""
        if self._up(node):
            self.cluster.crash(node)
            note("fault: crash")
        self._settle()

    @rule(node=node_ids)
    def restart(self, node: str) -> None:
        if self._present(node) and not self.cluster.is_up(node):
            self.cluster.restart(node)
            note("node restarted")
        self._settle()

    @rule(node=node_ids)
    def snapshot(self, node: str) -> None:
        """Force log compaction: the dump is written and the log truncated on the next ticks."""
        if self._up(node):
            self.cluster.force_snapshot(node)
            note("fault: snapshot")
        self._settle()

    @rule(seconds=st.sampled_from((0.5, 2.0, 8.0)))
    def wait(self, seconds: float) -> None:
        """Let virtual time pass: elections time out, leaders step down, nodes reconnect."""
        self.cluster.run_for(seconds)

    # --- membership --------------------------------------------------------------------------
    def _may_change_membership(self) -> bool:
        """pysyncobj's contract: one change at a time, the next only after the last one succeeded.

        A change whose outcome is unknown may still commit later, so it blocks
        further changes for the rest of the run.
        """
        return self.cluster.leader() is not None and all(
            ch.outcome not in (PENDING, UNKNOWN) for ch in self.cluster.membership_changes)

    @rule()
    def add_node(self) -> None:
        if self._may_change_membership() and len(self.cluster.voter_ids) < self.max_voters:
            self.cluster.add_node()
            note("membership: add node")
        self._settle()

    @rule(node=node_ids)
    def remove_node(self, node: str) -> None:
        if self._may_change_membership() and node != self.cluster.leader() \
                and node in self.cluster.voter_ids and len(self.cluster.voter_ids) > 3:
            self.cluster.remove_node(node)
            note("membership: remove node")
        self._settle()

    @rule()
    def add_readonly_node(self) -> None:
        readonly = [n for n in self.cluster.node_ids if n not in self.cluster.voter_ids]
        if len(readonly) < self.max_readonly:
            self.cluster.add_readonly_node()
            note("membership: add read-only node")
        self._settle()


class UnreliableNetworkRules(RaftMachine):
    """Faults only the Raft paper's network has: single messages duplicated and reordered."""

    network = "unreliable"

    @rule(node=node_ids, direction=directions, rate=st.sampled_from((0.3, 1.0)))
    def duplicate_messages(self, node: str, direction: str, rate: float) -> None:
        if self._present(node):
            self._add_filter(node, direction, DuplicateFilter(rate))
            note("fault: duplicate")
        self._settle()

    @rule(node=node_ids, direction=directions, max_delay=st.sampled_from((0.05, 0.5, 2.0)))
    def reorder_messages(self, node: str, direction: str, max_delay: float) -> None:
        if self._present(node):
            self._add_filter(node, direction, ReorderFilter(max_delay))
            note("fault: reorder")
        self._settle()


_record_rules(RaftMachine)
