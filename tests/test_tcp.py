"""TcpCluster: real pysyncobj nodes over real loopback sockets, with the harness' filters on the transport.

Everything here runs in wall-clock time on a possibly loaded machine, so
every wait is ``eventually``/``run_until`` with a generous timeout (it returns
as soon as the condition holds) and every test has a hard ``timeout`` mark.
"""
from __future__ import annotations

import gc
import os
import socket
import threading

import pytest
from pysyncobj import SyncObjException

from harness import Cluster, DuplicateFilter, HoldFilter, MessageTypeFilter, SafetyChecker, SafetyViolation
from harness.wire.filters import DelayFilter, DropPacketFilter
from harness.history import OK
from harness.tcp.cluster import HOST, TcpCluster
from harness.util import eventually

pytestmark = pytest.mark.timeout(120)

WAIT = 30.0  # generous upper bound for any single condition; typical waits are well under a second


def _fds() -> set:
    """Open descriptors (minus the one listdir itself used, gone by the time it is read back)."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        fds.add(fd)
    return fds


def _describe_fds(fds) -> list:
    out = []
    for fd in sorted(fds, key=int):
        try:
            out.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(f"{fd} -> ?")
    return out


def _converged(c: TcpCluster) -> bool:
    """One leader that every up node follows, and every up node committed and applied the same index."""
    states = [c.state(n) for n in c.up_ids()]
    leaders = {s.id for s in states if s.role == "leader"}
    return (len(leaders) == 1 and all(s.leader in leaders for s in states)
            and len({(s.commit_index, s.last_applied) for s in states}) == 1)


def _check(checker: SafetyChecker, c: TcpCluster, cursor: int) -> int:
    completed, cursor = c.history.completed_since(cursor)
    checker.step(c.observe(), completed, c.node_errors)
    return cursor


def test_three_nodes_elect_and_commit():
    with TcpCluster(nodes=3, seed=0) as c:
        assert sorted(c.ports) == ["n1", "n2", "n3"] and len(set(c.ports.values())) == 3
        assert all(c.address(n).startswith(f"{HOST}:") for n in c.node_ids)
        leader = c.wait_leader(timeout=WAIT)
        for i in range(5):
            op = c.must_put(f"k{i}", i, timeout=WAIT)
            assert op.outcome == OK and op.index is not None and op.term is not None
        assert c.must_get("k3", timeout=WAIT) == 3
        # every node applies every write, over real connections between every pair
        eventually(lambda: _converged(c), WAIT, cluster=c)
        assert all(c.connected(a, b) for a in c.node_ids for b in c.node_ids if a != b)
        with c.locked():
            assert all(c.node(n).local_get("k4") == 4 for n in c.node_ids)
        s = c.state(leader)
        assert s.role == "leader" and s.voted_for == leader and set(s.match_index) == set(c.node_ids) - {leader}
        SafetyChecker().step(c.observe(), list(c.history), c.node_errors)
        assert c.node_errors == []
        stats = c.stats
        assert stats["sent"] > 0 and stats["delivered"] > 0 and stats.get("dropped", 0) == 0


def test_isolated_leader_is_replaced_and_heal_converges():
    with TcpCluster(nodes=3, seed=1) as c:
        old = c.wait_leader(timeout=WAIT)
        c.must_put("a", 1, timeout=WAIT)
        c.isolate_node(old)
        # fifo: the cut closes the connections and refuses new ones
        eventually(lambda: not any(c.connected(old, n) or c.connected(n, old) for n in c.node_ids if n != old),
                   WAIT, cluster=c)
        eventually(lambda: c.leader() not in (None, old), WAIT, cluster=c,
                   message="the majority side did not elect a new leader")
        new = c.leader()
        c.must_put("b", 2, timeout=WAIT)
        assert c.state(old).commit_index < c.state(new).commit_index
        assert c.state(old).term < c.state(new).term
        c.clear_all_filters()
        eventually(lambda: _converged(c) and c.state(old).role == "follower", WAIT, cluster=c,
                   message="the healed cluster did not converge")
        assert c.must_get("b", timeout=WAIT) == 2
        c.must_put("c", 3, timeout=WAIT)
        eventually(lambda: _converged(c), WAIT, cluster=c)
        SafetyChecker().step(c.observe(), list(c.history), c.node_errors)
        # a partition with a bridge: only the two sides lose each other
        a, b, bridge = c.node_ids
        c.partition([a], [b])
        eventually(lambda: not c.connected(a, b) and not c.connected(b, a), WAIT, cluster=c)
        assert c.connected(a, bridge) and c.connected(bridge, b)
        c.clear_all_filters()
        eventually(lambda: c.connected(a, b) and c.connected(b, a), WAIT, cluster=c)


def test_crash_and_restart_keep_acknowledged_writes():
    with TcpCluster(nodes=3, seed=2) as c:
        checker, cursor = SafetyChecker(), 0
        first = c.wait_leader(timeout=WAIT)
        acked = {}
        for i in range(3):
            c.must_put(f"k{i}", i, timeout=WAIT)
            acked[f"k{i}"] = i
        port = c.ports[first]
        c.crash(first)
        assert not c.is_up(first) and c.state(first).role == "crashed"
        cursor = _check(checker, c, cursor)
        second = c.wait_leader(timeout=WAIT)
        assert second != first
        for i in range(3, 6):
            c.must_put(f"k{i}", i, timeout=WAIT)
            acked[f"k{i}"] = i
        cursor = _check(checker, c, cursor)
        c.restart(first)  # same port, same journal and dump
        assert c.incarnation(first) == 2 and c.ports[first] == port
        eventually(lambda: _converged(c), WAIT, cluster=c, message="the restarted node did not catch up")
        with c.locked():
            assert c.node(first).local_get("k5") == 5
        cursor = _check(checker, c, cursor)
        # Now only the files are left: crash everyone, restart everyone.
        for n in c.node_ids:
            c.crash(n)
        for n in c.node_ids:
            c.restart(n)
        c.wait_leader(timeout=WAIT)
        for key, value in acked.items():
            assert c.must_get(key, timeout=WAIT) == value
        cursor = _check(checker, c, cursor)
        assert c.stats["crashes"] == 4 and c.stats["restarts"] == 4


def test_message_type_filter_on_the_real_transport_blocks_replication():
    with TcpCluster(nodes=3, seed=3) as c:
        leader = c.wait_leader(timeout=WAIT)
        c.must_put("x", 0, timeout=WAIT)
        eventually(lambda: _converged(c), WAIT, cluster=c)
        follower = min(n for n in c.node_ids if n != leader)
        behind_at = c.state(follower).commit_index
        c.add_recv_filter(follower, MessageTypeFilter(["append_entries"]))
        delivered = c.delivered(dst=follower, kind="append_entries")
        for i in range(1, 4):
            c.must_put("x", i, timeout=WAIT)
        committed = max(c.state(n).commit_index for n in c.up_ids())
        assert committed >= behind_at + 3
        # The blocked follower heard no append_entries at all and stayed behind.
        assert c.state(follower).commit_index <= behind_at < committed
        assert c.delivered(dst=follower, kind="append_entries") == delivered
        assert c.dropped(dst=follower, kind="append_entries") > 0
        assert c.stats["resets"] > 0  # fifo: each dropped message broke its TCP connection
        c.clear_all_filters()
        eventually(lambda: c.state(follower).commit_index >= committed, WAIT, cluster=c,
                   message="the follower did not catch up once the filter was removed")
        assert c.delivered(dst=follower, kind="append_entries") > delivered
        eventually(lambda: c.state(follower).last_applied >= committed, WAIT, cluster=c)
        with c.locked():
            assert c.node(follower).local_get("x") == 3


def test_hold_filter_keeps_messages_until_release():
    with TcpCluster(nodes=3, seed=4) as c:
        leader = c.wait_leader(timeout=WAIT)
        c.must_put("h", 0, timeout=WAIT)
        eventually(lambda: _converged(c), WAIT, cluster=c)
        follower = min(n for n in c.node_ids if n != leader)
        hold = HoldFilter(["append_entries"])
        c.add_recv_filter(follower, hold)
        delivered = c.delivered(dst=follower, kind="append_entries")
        c.must_put("h", 1, timeout=WAIT)
        eventually(lambda: len(hold.held) > 0, WAIT, cluster=c)
        behind = c.state(follower).commit_index
        assert behind < max(c.state(n).commit_index for n in c.up_ids())
        # nothing held reached pysyncobj, and holding is not losing: no connection was broken
        assert c.delivered(dst=follower, kind="append_entries") == delivered
        assert c.stats.get("resets", 0) == 0
        released = hold.release()
        assert released > 0
        # the harness thread hands the held messages to pysyncobj, in order (unless their
        # connection broke meanwhile: then they are lost, as on a real TCP stream)
        eventually(lambda: c.delivered(dst=follower, kind="append_entries") > delivered
                   or c.stats.get("lost", 0) > 0, WAIT, cluster=c)
        c.clear_all_filters()
        eventually(lambda: _converged(c), WAIT, cluster=c, message="the follower did not catch up after release")
        assert c.state(follower).commit_index > behind


def test_unreliable_drops_do_not_break_connections():
    with TcpCluster(nodes=3, seed=5, network="unreliable") as c:
        leader = c.wait_leader(timeout=WAIT)
        follower = min(n for n in c.node_ids if n != leader)
        c.add_recv_filter(follower, DropPacketFilter(0.5))
        c.add_send_filter(follower, DelayFilter(0.02))
        # accepted in the unreliable model only (rate 0: duplicates and reordering of append_entries
        # are a known pysyncobj bug, tests/findings/test_reordered_append_entries.py, not this test's subject)
        c.add_recv_filter(follower, DuplicateFilter(0.0))
        for i in range(3):
            c.must_put("u", i, timeout=WAIT)
        c.run_until(lambda: c.dropped(dst=follower) >= 5, WAIT)
        stats = c.stats
        assert c.dropped(dst=follower) >= 5 and stats["delayed"] > 0
        assert stats.get("resets", 0) == 0 and stats.get("cuts", 0) == 0
        assert c.connected(follower, leader) and c.connected(leader, follower)  # lossy, yet connected
        c.clear_all_filters()
        eventually(lambda: _converged(c), WAIT, cluster=c)
        SafetyChecker().step(c.observe(), list(c.history), c.node_errors)


def test_safety_checker_catches_a_seeded_bug_over_tcp():
    """A harness that never fails proves nothing: a leader that commits alone is caught on real sockets."""
    from harness.adapter.patching import inject

    with inject("commit_quorum_off_by_one"), TcpCluster(nodes=3, seed=8) as c:
        checker, cursor = SafetyChecker(), 0
        old = c.wait_leader(timeout=WAIT)
        c.must_put("a", 1, timeout=WAIT)
        c.isolate_node(old)
        lonely = c.put("a", 2, via=old)  # the isolated leader commits it alone and acknowledges it
        assert c.run_until(lambda: lonely.outcome == OK, WAIT), lonely
        cursor = _check(checker, c, cursor)
        eventually(lambda: c.leader() not in (None, old), WAIT, cluster=c)
        with pytest.raises(SafetyViolation, match="state_machine_safety|durability|leader_completeness"):
            c.must_put("a", 3, timeout=WAIT)  # the majority's leader commits other entries at those indexes
            cursor = _check(checker, c, cursor)


def test_close_releases_threads_fds_ports_and_files():
    threads, fds = threading.active_count(), _fds()
    c = TcpCluster(nodes=3, seed=6)
    try:
        leader = c.wait_leader(timeout=WAIT)
        c.must_put("a", 1, timeout=WAIT)
        follower = min(n for n in c.node_ids if n != leader)
        c.add_send_filter(follower, DelayFilter(0.05))  # leaves timers behind at close
        c.add_recv_filter(follower, HoldFilter(["append_entries"]))  # and held messages
        c.crash(follower)
        c.restart(follower)
        c.put("b", 2)
        with pytest.raises(ValueError, match="needs network='unreliable'"):
            c.add_send_filter(leader, DuplicateFilter(1.0))
        ports, root = list(c.ports.values()), c.root
        assert threading.active_count() == threads + 1
        assert root.is_dir() and len(_fds() - fds) >= 4  # listening sockets, connections, journals
    finally:
        c.close()
    assert threading.active_count() == threads
    leaked = _fds() - fds
    assert not leaked, _describe_fds(leaked)
    assert not root.exists()
    for port in ports:  # nothing listens on or holds the ports any more
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((HOST, port))
            s.listen(1)
    c.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        c.put("c", 3)


def test_a_dropped_cluster_stops_and_cleans_up_by_itself():
    threads, fds = threading.active_count(), _fds()
    c = TcpCluster(nodes=3, seed=9)
    c.wait_leader(timeout=WAIT)
    root = c.root
    del c  # never closed: the finalizer stops the thread and releases everything
    gc.collect()
    assert threading.active_count() == threads
    leaked = _fds() - fds
    assert not leaked, _describe_fds(leaked)
    assert not root.exists()


def test_failed_start_releases_everything(monkeypatch):
    import harness.tcp.cluster as tcp

    threads, fds = threading.active_count(), _fds()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((HOST, 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        ports = iter([tcp.alloc_port(HOST), taken, tcp.alloc_port(HOST)])
        monkeypatch.setattr(tcp, "alloc_port", lambda host: next(ports))
        with pytest.raises(SyncObjException) as failure:
            TcpCluster(nodes=3, seed=7, maxBindRetries=2, bindRetryTime=0.05)
        assert failure.value.errorCode == "BindError"
        leaked = _fds() - fds - {str(squatter.fileno())}
    assert not leaked, _describe_fds(leaked)
    assert threading.active_count() == threads


def test_bad_arguments_and_simulated_cluster_conflict():
    for kwargs, match in (({"nodes": 0}, "nodes"), ({"network": "udp"}, "network"),
                          ({"autoTick": True}, "autoTick"), ({"bindAddress": "0.0.0.0:1"}, "bindAddress"),
                          ({"noSuchSetting": 1}, "unknown pysyncobj setting"),
                          ({"poll_interval": 0}, "poll_interval"),
                          ({"raftMinTimeout": 2.0, "raftMaxTimeout": 1.0}, "validate")):
        with pytest.raises(ValueError, match=match):
            TcpCluster(**kwargs)
    with Cluster(nodes=3, seed=0):
        with pytest.raises(RuntimeError, match="simulated"):
            TcpCluster(nodes=3)
