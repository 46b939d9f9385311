"""Nemesis rules: the faults of :mod:`harness.sim.faults` as Hypothesis rules with explicit arguments.

:class:`RaftMachine`'s own fault rules each act on one node's whole send or receive side.
:class:`NemesisRules` adds what real clusters also see (Jepsen's nemeses): one directed link slowed,
lossy, held or cut; asymmetric partitions and partitions of named shapes; process pauses; clock
skew; leadership transfer; crashes in the middle of a membership change or of a log compaction;
and clients that time out, write through several nodes at once, read locally, or change membership
twice without waiting.  Every argument is a plain value (node ids, a ring order as a string, rates),
so a shrunk counterexample prints as steps that can be pasted into a test; a rule naming a node the
cluster lacks does nothing, as in the base machine.  Local reads are checked after every step by
:mod:`harness.check.local_reads` (stale reads are allowed, going back is not).

Use it as the base of a machine in ``properties/``, or mix its rules into another machine by
inheriting from it next to that machine's base.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from harness.check.invariants import SafetyViolation, Violation
from harness.check.local_reads import LocalReadChecker
from harness.fuzz.machine import KEYS, NODE_IDS, RaftMachine, message_types, node_ids, note, targets
from harness.report.text import describe
from harness.sim.faults import CAN_TRANSFER_LEADERSHIP

#: Ring orders are strings ("n3 n1 n2 …") so that they replay as they print.
ring_orders = st.permutations(NODE_IDS).map(" ".join)


class NemesisRules(RaftMachine):
    """:class:`RaftMachine` plus per-link faults, partition shapes, pauses, clock skew, leadership
    transfer, crashes mid-change and mid-snapshot, and client variety; local reads judged after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.local_reads = LocalReadChecker()

    def _pair(self, src: str, dst: str) -> bool:
        return src != dst and self._present(src) and self._present(dst)

    # --- one directed link ---------------------------------------------------------------------
    @rule(src=node_ids, dst=node_ids)
    def cut_link(self, src: str, dst: str) -> None:
        """Lose everything ``src`` sends to ``dst`` (on fifo the connection stays down meanwhile)."""
        if self._pair(src, dst):
            self.cluster.cut_link(src, dst)
            note("fault: one-way cut")
        self._settle()

    @rule(src=node_ids, dst=node_ids, seconds=st.sampled_from((0.05, 0.3, 1.5)))
    def delay_link(self, src: str, dst: str, seconds: float) -> None:
        """A slow path from ``src`` to ``dst`` (order kept on fifo)."""
        if self._pair(src, dst):
            self.cluster.delay_link(src, dst, seconds)
            note("fault: link delay")
        self._settle()

    @rule(src=node_ids, dst=node_ids, rate=st.sampled_from((0.1, 0.3, 1.0)))
    def drop_link(self, src: str, dst: str, rate: float) -> None:
        if self._pair(src, dst):
            self.cluster.drop_link(src, dst, rate)
            note("fault: link drop")
        self._settle()

    @rule(src=node_ids, dst=node_ids, kind=message_types)
    def hold_link(self, src: str, dst: str, kind: str) -> None:
        """Hold one message type from ``src`` to ``dst`` (on fifo: and everything behind it) until released."""
        if self._pair(src, dst):
            self._holds.append(self.cluster.hold_link(src, dst, [kind]))
            note("fault: link hold")
        self._settle()

    @rule(src=node_ids, dst=node_ids, kind=message_types)
    def block_link_type(self, src: str, dst: str, kind: str) -> None:
        if self._pair(src, dst):
            self.cluster.block_link_type(src, dst, kind)
            note("fault: link block type")
        self._settle()

    # --- partition shapes ----------------------------------------------------------------------
    @rule(senders=st.frozensets(node_ids, min_size=1))
    def partition_one_way(self, senders: frozenset) -> None:
        """The others stop hearing ``senders``; ``senders`` still hear them (asymmetric on unreliable)."""
        a = sorted(n for n in senders if self._present(n))
        b = [n for n in self.cluster.node_ids if n not in senders]
        if a and b:
            self.cluster.partition_one_way(a, b)
            note("fault: one-way partition")
        self._settle()

    @rule(minority=st.frozensets(node_ids, min_size=1))
    def partition_majority(self, minority: frozenset) -> None:
        """Majority against minority: the first of ``minority`` present, fewer than half the cluster."""
        everyone = self.cluster.node_ids
        side = sorted(n for n in minority if self._present(n))[:(len(everyone) - 1) // 2]
        if side:
            self.cluster.partition_majority(side)
            note("fault: majority/minority")
        self._settle()

    def _order(self, order: str) -> Optional[List[str]]:
        present = [n for n in order.split() if self._present(n)]
        return present if len(present) >= 4 else None

    @rule(order=ring_orders)
    def partition_ring(self, order: str) -> None:
        """Nodes in ``order`` around a ring, each seeing only its two neighbours."""
        ring = self._order(order)
        if ring is not None:
            self.cluster.partition_ring(ring)
            note("fault: ring")
        self._settle()

    @rule(order=ring_orders)
    def partition_majorities_ring(self, order: str) -> None:
        """Every node sees a majority, no two the same one."""
        ring = self._order(order)
        if ring is not None:
            self.cluster.partition_majorities_ring(ring)
            note("fault: majorities ring")
        self._settle()

    # --- process pauses and clocks -------------------------------------------------------------
    @rule(node=targets, seconds=st.sampled_from((0.5, 2.0, 5.0)))
    def pause(self, node: str, seconds: float) -> None:
        """SIGSTOP ``node`` (or the leader) for ``seconds``: it catches up on its backlog when it continues."""
        target = self._via(node)
        if target is not None and self.cluster.is_up(target) and not self.cluster.is_paused(target):
            if self.cluster.leader() == target:
                note("fault: pause leader")
            self.cluster.pause(target, seconds)
            note("fault: pause")
        self._settle()

    @rule(node=node_ids, rate=st.sampled_from((0.5, 0.75, 1.0, 1.5, 2.0)))
    def skew_clock(self, node: str, rate: float) -> None:
        """Run ``node``'s clock at ``rate`` times real speed (1.0 puts it back to normal speed)."""
        if self._present(node):
            self.cluster.skew_clock(node, rate)
            note("fault: clock skew")
        self._settle()

    # --- leadership transfer -------------------------------------------------------------------
    @precondition(lambda self: CAN_TRANSFER_LEADERSHIP)
    @rule(to=st.sampled_from(("any",) + NODE_IDS))
    def transfer_leadership(self, to: str) -> None:
        """Ask the leader to hand over to ``to`` (``any``: pysyncobj picks); 0.3.16+."""
        leader = self.cluster.leader()
        target = None if to == "any" else to
        if CAN_TRANSFER_LEADERSHIP and leader is not None and target != leader and (
                target is None or target in self.cluster.voter_ids):
            self.cluster.transfer_leadership(target)
            note("leadership transfer")
        self._settle()

    # --- clients -------------------------------------------------------------------------------
    @rule()
    def add_two_nodes_at_once(self) -> None:
        """Two voters added through the leader without waiting for the first change to commit: a caller
        that ignores pysyncobj's "wait for the previous change" (nothing enforces it; finding 1)."""
        if self._may_change_membership() and len(self.cluster.voter_ids) + 2 <= self.max_voters:
            self.cluster.add_node()
            self.cluster.add_node()
            note("membership: two changes at once")
        self._settle()

    @rule(node=node_ids, removing=st.none() | node_ids)
    def crash_mid_change(self, node: str, removing: Optional[str]) -> None:
        """Add a voter (or remove ``removing``) and crash ``node`` at the instant the leader counts its
        acknowledgement of the change (the leader itself: as it appends it), before ``node`` can hear
        that it committed: it restarts from a log whose latest configuration it never saw committed.
        Jepsen's membership nemesis with a kill; no crash if that instant does not come within 2 s."""
        leader = self.cluster.leader()
        voters = self.cluster.voter_ids
        if not (self._may_change_membership() and node in voters and self._up(node)):
            return self._settle()
        if removing is None and len(voters) < self.max_voters:
            member = self.cluster.add_node()
        elif removing in voters and removing not in (leader, node) and len(voters) > 3:
            self.cluster.remove_node(removing)
        else:
            return self._settle()

        def holds(members: Tuple[str, ...]) -> bool:
            return member in members if removing is None else removing not in members

        appended: List[int] = []  # the leader's last index once it holds the change: the entry or past it

        def acknowledged() -> bool:
            if not (self._up(leader) and self._up(node)):
                return False
            seen = self.cluster.state(leader)
            if not appended and holds(seen.membership):
                appended.append(seen.last_index)
            return bool(appended) and (node == leader or seen.match_index.get(node, 0) >= appended[0])

        if self.cluster.run_until(acknowledged, 2.0):
            self.cluster.crash(node)
            note("fault: crash mid-change")
        note("membership: " + ("add node" if removing is None else "remove node"))
        self._settle()

    @rule(node=node_ids)
    def crash_mid_snapshot(self, node: str) -> None:
        """A write through the leader; the instant the leader counts follower ``node``'s acknowledgement
        of it, ``node`` (not applying it yet) compacts its log and crashes once the new dump is in
        place, before the log is truncated.  With pysyncobj's default ``useFork=True`` that window
        lasts as long as the forked dump writer runs (the simulation's is one tick), and a cluster
        under load has entries in flight all through it."""
        leader = self.cluster.leader()
        if leader is None or node == leader or not self._up(node):
            return self._settle()
        state = self.cluster.state
        before = state(leader).last_index  # the write's entry comes after this one
        self.cluster.put(KEYS[0], self._value(), via=leader)

        def acknowledged_unapplied() -> bool:
            if not (self._up(node) and self._up(leader) and state(leader).match_index.get(node, 0) > before):
                return False
            follower = state(node)
            return follower.last_applied < follower.last_index

        if self.cluster.run_until(acknowledged_unapplied, 2.0):
            storage = self.cluster.storage
            storage.enable("crash_between_dump_and_truncate", node)
            self.cluster.force_snapshot(node)
            if self.cluster.run_until(lambda: not self._up(node), 2.0):
                note("fault: crash mid-snapshot")
            storage.disable("crash_between_dump_and_truncate", node)
        self._settle()

    @rule(node=st.sampled_from(("any",) + NODE_IDS))
    def snapshot_mid_catch_up(self, node: str) -> None:
        """The leader compacts its log now, and again, once within the next 30 s whatever steps run the
        cluster meanwhile (a heal, a wait), the instant follower ``node`` (``any``: any follower), holding
        entries it has not seen committed, comes to need a snapshot from it (connected, its next index
        at or below the leader's first entry): the catch-up that must replace a log, with a dump under
        way.  With pysyncobj's default ``useFork=True`` a dump lasts as long as the forked writer runs,
        so any compaction during a catch-up overlaps it; the simulation's is over in a tick, and a
        catch-up after a heal is over before a next step could start one."""
        if node != "any" and not self._present(node):
            return self._settle()
        leaders: List[str] = []  # the leader the predicate found a follower of, for the action

        def needs_snapshot() -> bool:
            leader = self.cluster.leader()
            if leader is None:
                return False
            seen = self.cluster.state(leader)
            for follower, index in sorted(seen.next_index.items()):
                if index <= seen.first_index and node in ("any", follower) and self._up(follower) \
                        and self.cluster.connected(leader, follower):
                    held = self.cluster.state(follower)
                    if held.last_index > held.commit_index:
                        leaders[:] = [leader]
                        return True
            return False

        def compact() -> None:
            self.cluster.force_snapshot(leaders[0])
            note("fault: snapshot mid catch-up")

        leader = self.cluster.leader()
        if leader is not None:
            self.cluster.force_snapshot(leader)  # whoever is behind it now will need a snapshot
            note("fault: snapshot, another armed for a catch-up")
        self.cluster.when(needs_snapshot, compact, within=30.0)
        self._settle()

    @rule(key=st.sampled_from(KEYS), via=targets, timeout=st.sampled_from((0.1, 0.5, 2.0)))
    def write_with_timeout(self, key: str, via: str, timeout: float) -> None:
        """A client that gives up after ``timeout``: the write's outcome is then unknown."""
        node = self._via(via)
        if node is not None:
            self.cluster.timed_put(key, self._value(), timeout, via=node)
            note("write with timeout")
        self._settle()

    @rule(vias=st.frozensets(node_ids, min_size=2), same_key=st.booleans())
    def concurrent_writes(self, vias: frozenset, same_key: bool) -> None:
        """One write through each node of ``vias`` at the same instant, to one key or to different keys."""
        nodes = sorted(n for n in vias if self._present(n))
        for i, node in enumerate(nodes):
            self.cluster.put(KEYS[0 if same_key else i % len(KEYS)], self._value(), via=node)
        if len(nodes) >= 2:
            note("concurrent writes")
        self._settle()

    @rule(key=st.sampled_from(KEYS), via=targets)
    def local_read(self, key: str, via: str) -> None:
        """Read ``key`` from one node's own state, outside the log (may be stale, never go back)."""
        node = self._via(via)
        if node is not None:
            self.cluster.local_read(key, via=node)
            note("local read")
        self._settle()

    @invariant()
    def local_reads_hold(self) -> None:
        """Local reads return written values, none from the future, never older than before: see
        :mod:`harness.check.local_reads`."""
        if self.cluster is None:
            return
        problems = self.local_reads.check(self.cluster.history)
        if problems:
            self._fail(SafetyViolation([Violation("local_reads", p) for p in problems], describe(self.cluster)))

    def _check_linearizable(self) -> None:
        # Teardown's history check: local reads answered after the last step (a paused node's) too.
        self.local_reads_hold()
        super()._check_linearizable()
