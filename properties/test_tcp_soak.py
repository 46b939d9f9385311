"""Soak: Raft safety of pysyncobj over real loopback TCP (``harness.tcp.cluster.TcpCluster``).

The same checks as the simulated machines (``SafetyChecker`` after every step,
liveness and linearizability at the end), on real sockets in wall-clock time,
with a few coarse faults: writes, isolation, heal, crash, restart, and at the end
``clients_answered`` (every client of a node that follows the leader is answered).  Opt-in and
bounded: the plugin skips tests marked ``soak`` unless run with
``pytest properties/test_tcp_soak.py --raft-soak`` (or ``RAFT_HARNESS_SOAK=1``);
``RAFT_HARNESS_SOAK_EXAMPLES`` raises the number of examples (default 3, 10
steps each, ~10 s per example).

A run depends on real timing, so it does not replay: there is no shrinking and
no example database.  A failure prints the steps that led to it and the node
table; Hypothesis may add that a re-run did not fail again (``Flaky``), which
does not make the original failure any less real.
"""
from __future__ import annotations

import os
from typing import Tuple

import pytest
from hypothesis import HealthCheck, Phase, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from harness import LivenessViolation, SafetyChecker, SafetyViolation, Violation, check_linearizable
from harness.check.answers import follower_clients_answered
from harness.environment import SOAK_EXAMPLES_ENV
from harness.history import PENDING
from harness.report.text import describe
from harness.tcp.cluster import TcpCluster

pytestmark = [pytest.mark.soak, pytest.mark.timeout(900)]

NODES = ("n1", "n2", "n3")
KEYS = ("a", "b", "c")


class TcpSoak(RuleBasedStateMachine):
    """Client writes and node/network faults against a 3-node TcpCluster; safety checked after every step."""

    #: Wall seconds the cluster runs after each rule (with one background write through the leader).
    step_time = 0.3
    #: Wall seconds a healed, fully restarted cluster gets to commit a write.
    liveness_timeout = 30.0
    #: Wall seconds it then gets to answer every client still waiting: longer than pysyncobj's
    #: leaderFallbackTimeout (30 s), after which a deposed leader that hears no majority fails its clients.
    answer_timeout = 40.0

    def __init__(self) -> None:
        super().__init__()
        self.cluster = None
        self.checker = SafetyChecker()
        self._cursor = 0
        self._next_value = 0
        self._failed = False

    @initialize(seed=st.integers(0, 2 ** 16))
    def start_cluster(self, seed: int) -> None:
        self.cluster = TcpCluster(nodes=len(NODES), seed=seed)
        self.cluster.wait_leader(timeout=self.liveness_timeout)  # steps start from a working cluster

    def _value(self) -> int:
        self._next_value += 1
        return self._next_value

    def _settle(self) -> None:
        leader = self.cluster.leader()
        if leader is not None:
            self.cluster.put(KEYS[self._next_value % len(KEYS)], self._value(), via=leader)
        self.cluster.run_for(self.step_time)

    @rule(key=st.sampled_from(KEYS), via=st.sampled_from(("leader",) + NODES))
    def write(self, key: str, via: str) -> None:
        node = self.cluster.leader() if via == "leader" else via
        if node is not None:
            self.cluster.put(key, self._value(), via=node)
        self._settle()

    @rule(target_node=st.sampled_from(("leader",) + NODES))
    def isolate(self, target_node: str) -> None:
        """Cut one node (often the leader: its writes then race the majority's new leader) off."""
        node = self.cluster.leader() if target_node == "leader" else target_node
        if node is not None:
            self.cluster.isolate_node(node)
        self._settle()

    @rule()
    def heal(self) -> None:
        self.cluster.clear_all_filters()
        self._settle()

    @rule(node=st.sampled_from(NODES))
    def crash(self, node: str) -> None:
        if self.cluster.is_up(node):
            self.cluster.crash(node)
        self._settle()

    @rule(node=st.sampled_from(NODES))
    def restart(self, node: str) -> None:
        if not self.cluster.is_up(node):
            self.cluster.restart(node)
        self._settle()

    @rule(seconds=st.sampled_from((0.5, 1.5)))
    def wait(self, seconds: float) -> None:
        """Let elections time out and connections come back."""
        self.cluster.run_for(seconds)

    def _fail(self, exc: AssertionError) -> None:
        self._failed = True
        raise exc

    @invariant()
    def raft_safety(self) -> None:
        if self.cluster is None:
            return
        completed, self._cursor = self.cluster.history.completed_since(self._cursor)
        try:
            self.checker.step(self.cluster.observe(), completed, self.cluster.node_errors)
        except SafetyViolation as v:
            self._fail(SafetyViolation(v.violations, describe(self.cluster)))

    def _await_answers(self) -> Tuple[float, int]:
        """Run the live cluster, a write through the leader every second (pysyncobj answers a command whose
        entry a new leader overwrote only when the log passes its index again), until no client waits or
        answer_timeout passes; the seconds it ran, and the leader's commit index when it started."""
        c = self.cluster
        start = c.now
        leader = c.leader()
        committed = c.state(leader).commit_index if leader is not None else 0
        deadline = start + self.answer_timeout
        waiting = c.history.pending()

        def answered() -> bool:
            return all(op.outcome != PENDING for op in waiting)

        while waiting and c.now < deadline:
            leader = c.leader()
            if leader is not None:
                c.put(KEYS[0], self._value(), via=leader)
            c.run_until(answered, timeout=max(0.0, min(1.0, deadline - c.now)))
            waiting = c.history.pending()
        return c.now - start, committed

    def _check_answered(self, waited: float, committed: int) -> None:
        c = self.cluster
        violations = follower_clients_answered([c.state(n) for n in c.up_ids()], c.history, committed, waited,
                                               clock="wall")
        if violations:
            self._fail(LivenessViolation(f"{violations[0]}\n{describe(c)}", violations))

    def teardown(self) -> None:
        c = self.cluster
        if c is None:
            return
        try:
            if not self._failed:
                c.clear_all_filters()
                for node in c.node_ids:
                    if not c.is_up(node):
                        c.restart(node)
                try:
                    c.must_put("liveness", self._value(), timeout=self.liveness_timeout)
                except AssertionError as e:
                    self._fail(LivenessViolation(
                        f"liveness: healed TCP cluster with every node up did not commit a write within "
                        f"{self.liveness_timeout} s ({e})\n{describe(c)}"))
                waited, committed = self._await_answers()
                self.raft_safety()
                self._check_answered(waited, committed)
                result = check_linearizable(c.history)
                if not result.ok:
                    self._fail(SafetyViolation([Violation("linearizability", result.explanation)], describe(c)))
        finally:
            c.close()


TestTcpSoak = TcpSoak.TestCase
TestTcpSoak.settings = settings(
    max_examples=int(os.environ.get(SOAK_EXAMPLES_ENV, "3")),
    stateful_step_count=10,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
