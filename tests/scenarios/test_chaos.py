"""Chaos: scripted storms of faults under client load, every safety invariant checked each step.

Each test draws its fault schedule from a fixed seed, ends by healing every
fault and restarting every node, and then asks for liveness (a write commits)
and a linearizable client history.
"""
from __future__ import annotations

import random

import pytest

from harness import (Cluster, ConditionalFilter, DelayFilter, DropPacketFilter, DuplicateFilter, HoldFilter,
                     IsolationFilter, check_linearizable)
from harness.history import OK

from ._support import Watched, converged, data, others


def _load(c: Cluster, w: Watched, rng: random.Random, seconds: float, tag: str) -> None:
    """Client traffic for ``seconds``: a write or a log read every 0.1 s through a random up node."""
    for i in range(int(seconds / 0.1)):
        up = c.up_ids()
        if up:
            key = rng.choice("abc")
            if rng.random() < 0.7:
                c.put(key, f"{tag}.{i}", via=rng.choice(up))
            else:
                c.get(key, via=rng.choice(up))
        w.run_for(0.1)


def _finish(c: Cluster, w: Watched) -> None:
    """Heal everything, restart every crashed node, then require progress and a linearizable history."""
    c.clear_all_filters()
    for n in c.node_ids:
        if not c.is_up(n):
            c.restart(n)
    w.must_put("a", "final", timeout=60)
    assert w.run_until(lambda: converged(c), 20)
    assert len({tuple(sorted(data(c, n).items())) for n in c.node_ids}) == 1
    assert sum(op.outcome == OK for op in c.history) >= 10
    result = check_linearizable(c.history)
    assert result, result.explanation


def test_rotating_partitions_and_crashes_under_load():
    """Twelve rounds on 5 nodes, each a random fault (2|3 split, isolated node, crash of a node or of
    the leader) held for 1-2 s under load and then healed (crashed nodes restarted): no invariant
    breaks, the cluster recovers, the history is linearizable."""
    with Cluster(5, seed=41) as c:
        w = Watched(c)
        w.wait_leader()
        rng = random.Random(41)
        for rnd in range(12):
            fault = rng.choice(["split", "isolate", "crash", "crash-leader"])
            target = c.leader() if fault == "crash-leader" and c.leader() else rng.choice(c.node_ids)
            if fault == "split":
                side = rng.sample(c.node_ids, 2)
                c.partition(side, [n for n in c.node_ids if n not in side])
            elif fault == "isolate":
                c.isolate_node(target)
            else:
                c.crash(target)
            _load(c, w, rng, rng.uniform(1, 2), f"r{rnd}")
            c.clear_all_filters()
            for n in c.node_ids:
                if not c.is_up(n):
                    c.restart(n)
            w.run_for(0.5)
        _finish(c, w)
        assert c.stats["crashes"] >= 3


def test_lossy_slow_links_everywhere():
    """Every node drops 3% of what it sends (each loss breaks a TCP connection) and one follower is
    250 ms slow: writes keep committing, nothing unsafe happens, and everyone converges after."""
    with Cluster(3, seed=42) as c:
        w = Watched(c)
        leader = w.wait_leader()
        for n in c.node_ids:
            c.add_send_filter(n, DropPacketFilter(0.03))
        c.add_send_filter(others(c, leader)[0], DelayFilter(0.25))
        _load(c, w, random.Random(42), 15, "lossy")
        assert sum(op.outcome == OK for op in c.history) >= 30
        _finish(c, w)


def test_raft_paper_network_loses_and_duplicates_messages():
    """The unreliable network (no connections to break): 10% of messages lost and 10% delivered
    twice on every node's send side, under load; Raft's safety holds and the cluster converges."""
    with Cluster(3, seed=43, network="unreliable") as c:
        w = Watched(c)
        w.wait_leader()
        for n in c.node_ids:
            c.add_send_filter(n, DropPacketFilter(0.1))
            c.add_send_filter(n, DuplicateFilter(0.1))
        _load(c, w, random.Random(43), 10, "dup")
        _finish(c, w)


def test_leader_killed_after_every_few_writes():
    """The leader crashes over and over (restarted 1 s later from its journal), six times: every
    acknowledged write keeps its slot (durability), each election picks a node that has all of
    them (leader completeness), and the history is linearizable."""
    with Cluster(3, seed=44) as c:
        w = Watched(c)
        rng = random.Random(44)
        for rnd in range(6):
            leader = w.wait_leader()
            _load(c, w, rng, 0.8, f"k{rnd}")
            c.crash(leader)
            w.run_for(1)
            c.restart(leader)
        _finish(c, w)
        assert c.stats["restarts"] == 6


def test_flapping_leader_link():
    """The first leader's connectivity flaps (an isolation switched on and off every 0.6-1.4 s) for
    15 s under load: leadership moves back and forth without ever breaking an invariant."""
    with Cluster(3, seed=45) as c:
        w = Watched(c)
        flapper = w.wait_leader()
        switch = ConditionalFilter(IsolationFilter(), enabled=False)
        c.add_send_filter(flapper, switch)
        rng = random.Random(45)
        terms = set()
        end = c.now + 15
        while c.now < end:
            switch.switch(not switch.enabled)
            _load(c, w, rng, rng.uniform(0.6, 1.4), "flap")
            if c.leader():
                terms.add(c.state(c.leader()).term)
        assert len(terms) >= 3  # leadership really changed hands
        _finish(c, w)


def test_stalled_links_released_in_a_burst():
    """Both followers' incoming append_entries stall (held, TCP-like, blocking everything behind
    them) for 3 s, long enough for elections, then all held traffic arrives at once; stale messages
    from old terms must be harmless."""
    with Cluster(3, seed=46) as c:
        w = Watched(c)
        leader = w.wait_leader()
        rng = random.Random(46)
        for rnd in range(3):
            holds = []
            for n in others(c, c.leader() or leader):
                holds.append(HoldFilter(["append_entries"]))
                c.add_recv_filter(n, holds[-1])
            _load(c, w, rng, 3, f"stall{rnd}")
            assert sum(len(h.held) for h in holds) > 0
            c.clear_all_filters()  # releases every held message, in order
            _load(c, w, rng, 1, f"after{rnd}")
        _finish(c, w)


def test_receive_side_holds_released_between_steps_on_the_unreliable_network():
    """Releasing held messages (directly, or by healing) between steps must deliver them as events in
    virtual time, like everything else, without any exception inside a node (a regression test:
    the unreliable network once delivered them synchronously, outside any cluster step)."""
    with Cluster(3, seed=47, network="unreliable") as c:
        w = Watched(c)
        leader = w.wait_leader()
        followers = others(c, leader)
        holds = [HoldFilter(["append_entries"]) for _ in followers]
        for n, h in zip(followers, holds):
            c.add_recv_filter(n, h)
        w.run_for(0.5)
        assert all(h.held for h in holds)
        holds[0].release()
        c.clear_all_filters()  # releases the other one
        w.run_for(0.5)
        assert c.node_errors == []
