"""``skip_idle_ticks`` and ``observe.next_deadline``: skipping a tick must never change what the nodes do.

Checks that fail if ``next_deadline`` lies.  With ``read_step=0`` a skipped tick has no effect at
all, so the same run with and without skipping has the same trace digest (every message, its payload
and delivery time) and ends in the same node states.  With the default read step the skipped ticks'
clock reads are missing, so times drift by microseconds: the runs still deliver the same messages
in the same order while nothing the harness does races a message (a fault timed by ``run_until`` can
land on the other side of one; crash-snapshot and pause-skew have one).  And a node
ticked by hand at any time before its predicted deadline sends nothing and changes no state.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import pytest

from harness import Cluster
from harness.adapter import observe
from helpers import others

#: How far apart the two runs' delivery times may drift: the clock reads of the skipped ticks.
TIME_SLACK = 0.05


def _calm(c: Cluster) -> None:
    c.wait_leader()
    for i in range(10):
        c.must_put(f"k{i}", i)
    c.run_for(20)


def _partition_and_heal(c: Cluster) -> None:
    leader = c.wait_leader()
    c.must_put("a", 1)
    c.partition([leader], others(c, leader))
    c.run_for(3)
    c.heal()
    c.run_for(3)
    c.must_put("b", 2)
    c.run_for(5)


def _crash_restart_snapshot(c: Cluster) -> None:
    leader = c.wait_leader()
    follower = others(c, leader)[0]
    c.crash(follower)
    for i in range(5):
        c.must_put(f"c{i}", i)
    for n in c.up_ids():
        c.force_snapshot(n)
    c.run_for(2)
    c.restart(follower)
    c.run_for(3)
    c.crash(c.leader())  # the rest step down or elect: fallback and election deadlines
    c.run_for(5)


def _pause_and_skew(c: Cluster) -> None:
    leader = c.wait_leader()
    follower = others(c, leader)[0]
    c.pause(follower, 2.0)
    c.must_put("p", 1)
    c.skew_clock(others(c, leader)[-1], 2.0)
    c.run_for(4)
    c.must_put("q", 2)
    c.run_for(5)


SCENARIOS: Dict[str, Tuple[Callable[[Cluster], None], Dict[str, Any]]] = {
    "calm": (_calm, {}),
    "partition": (_partition_and_heal, {}),
    "crash-snapshot": (_crash_restart_snapshot, dict(nodes=5)),
    "pause-skew": (_pause_and_skew, {}),
    "compaction": (_calm, dict(logCompactionMinEntries=4, logCompactionMinTime=1.0)),
}


def _run(scenario: str, seed: int, network: str, skip: bool,
         read_step: float = 1e-6) -> Tuple[List[Dict[str, Any]], list, int, str]:
    body, options = SCENARIOS[scenario]
    options = dict(options)
    with Cluster(nodes=options.pop("nodes", 3), seed=seed, network=network, skip_idle_ticks=skip,
                 read_step=read_step, **options) as c:
        c.record_messages()
        body(c)
        states = [(s.id, s.up, s.role, s.term, s.commit_index, s.last_applied, s.first_index,
                   s.last_index, s.last_term, s.tail) for s in c.observe()]
        return c.take_message_log(), states, c.stats["ticks"], c.trace_digest()


@pytest.mark.parametrize("network", ["fifo", "unreliable"])
@pytest.mark.parametrize("seed", [0, 5, 9])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_skipping_is_invisible_without_read_steps(scenario: str, seed: int, network: str) -> None:
    _, plain_states, plain_ticks, plain_digest = _run(scenario, seed, network, skip=False, read_step=0.0)
    _, skipping_states, skipping_ticks, skipping_digest = _run(scenario, seed, network, skip=True,
                                                               read_step=0.0)
    assert skipping_digest == plain_digest
    assert skipping_states == plain_states
    assert skipping_ticks < plain_ticks


@pytest.mark.parametrize("network", ["fifo", "unreliable"])
@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("scenario", ["calm", "compaction", "partition"])
def test_skipping_delivers_the_same_messages(scenario: str, seed: int, network: str) -> None:
    plain, plain_states, plain_ticks, _ = _run(scenario, seed, network, skip=False)
    skipping, skipping_states, skipping_ticks, _ = _run(scenario, seed, network, skip=True)
    key = ("seq", "src", "dst", "kind", "term")
    assert [[m[k] for k in key] for m in skipping] == [[m[k] for k in key] for m in plain]
    drift = max((abs(a["delivered"] - b["delivered"]) for a, b in zip(plain, skipping)), default=0.0)
    assert drift < TIME_SLACK
    assert skipping_states == plain_states
    assert skipping_ticks < plain_ticks


def _assert_idle_ticks_do_nothing(c: Cluster) -> int:
    """Tick every up, unpaused node whose deadline is still ahead; none may send or change. How many ran."""
    checked = 0
    for node_id in c.up_ids():
        slot = c._slots[node_id]
        if slot.clock is not None or c._net.is_paused(node_id):
            continue
        if observe.next_deadline(slot.obj) <= c.now + 0.01:
            continue
        before = c.state(node_id)
        sent = c.messages_delivered
        with c._active():
            slot.obj.doTick(0.0)
        assert not c._net._endpoints[node_id].outbox, f"{node_id} sent before its deadline"
        assert c.state(node_id) == before, f"{node_id} changed before its deadline"
        assert c.messages_delivered == sent
        checked += 1
    return checked


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_tick_before_the_deadline_acts(seed: int) -> None:
    with Cluster(nodes=3, seed=seed) as c:
        checked = 0
        for step in range(200):
            c.run_for(0.037)  # off the tick grid, so the checks land between ticks and messages
            if step == 60:
                c.put("x", step)
            if step == 100:
                c.isolate_node(c.leader() or "n1")
            if step == 140:
                c.heal()
            checked += _assert_idle_ticks_do_nothing(c)
        assert checked > 100


def test_next_deadline_reports_pending_work() -> None:
    with Cluster(nodes=3, seed=4) as c:
        leader = c.wait_leader()
        c.run_for(1)
        node = c.node(leader)
        assert observe.NOW < observe.next_deadline(node) < float("inf")
        c.force_snapshot(leader)
        assert observe.next_deadline(node) == observe.NOW


def test_skip_idle_ticks_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="skip_idle_ticks"):
        Cluster(nodes=3, skip_idle_ticks="yes")
