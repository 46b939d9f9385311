"""Membership changes of a simulated cluster: voters added and removed through the leader, learners.

pysyncobj appends a membership entry and applies it when appended; the harness records each proposal
as a :class:`MembershipChange` with its outcome, and keeps apart the nodes that are members for sure
(initial voters, or adds that succeeded): those are the only peers restarted and new nodes are given.
A mixin of :class:`harness.sim.cluster.Cluster`, which owns the slots, the network and the clock.
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional

from pysyncobj import FAIL_REASON

from harness.adapter import observe as compat
from harness.history import FAILED, OK, PENDING
from harness.sim.network import SimNode

__all__ = ["Membership", "MembershipChange"]


@dataclasses.dataclass
class MembershipChange:
    """One proposed membership change (``add_node``/``remove_node``) and how it ended."""

    kind: str  # "add" or "remove"
    node: str
    via: str
    invoke: float
    complete: Optional[float] = None
    outcome: str = PENDING
    reason: Optional[str] = None


class Membership:
    """Proposing, tracking and applying membership changes (mixed into the simulated Cluster)."""

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
                change.outcome, change.reason = self._failure_outcome(error)
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
            if self._tap is not None:
                self._tap.detach(node_id)
            slot.obj = None
        slot.removed = True
        self._net.forget(node_id)
        self._abandon_operations(node_id, "PROPOSER_REMOVED")

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
