"""Fixes for the findings in how pysyncobj handles requests: membership changes, forwarded commands and
commands waiting for their entry (FINDINGS.md 1, 6, 13, 20, 22).

A client's request either goes into the leader's log (a membership change is refused while another
is uncommitted) or, on a follower, is forwarded to the leader and waits for its reply; these fixes
make the guard work and make every forwarded command end with an answer.  Each is a
:class:`~harness.adapter.patching.Mutation` with a probe that is True only with the fix in;
:mod:`harness.adapter.fixes` collects them into ``KNOWN_FIXES``.
"""
from __future__ import annotations

from typing import List

from pysyncobj import FAIL_REASON

from harness.adapter.patching import LOAD_DUMP, ON_MESSAGE, Mutation
from harness.adapter.probes import FOLLOWER, LEADER, Probe, scratch_files, snapshot_chunk, snapshot_data

__all__ = ["FIXES"]

#: A regular command: pysyncobj's type byte 0, then the payload.
_COMMAND = b"\x00command"


# --------------------------------------------------------------------------------------------
# Probes: each is True when the *fixed* behaviour is there
# --------------------------------------------------------------------------------------------
def _probe_membership_change_guard(p: Probe) -> bool:
    p.get("conf").dynamicMembershipChange = True
    p.make(LEADER, 1)
    p.set("noopIDx", 1)  # the leader's no-op is applied: membership changes are allowed
    p.set("raftLastApplied", 1)
    outcomes: List[int] = []
    p.obj.addNodeToCluster("d", callback=lambda result, error: outcomes.append(error))
    p.obj.addNodeToCluster("e", callback=lambda result, error: outcomes.append(error))
    p.obj._checkCommandsToApply()  # the leader's tick: the first change is appended, the second must wait
    return outcomes == [FAIL_REASON.REQUEST_DENIED] and p.log == [(1, 0), (2, 1)]


def _forward_one_command(p: Probe) -> List[int]:
    """A follower of b forwards one command to b; the outcomes its callback gets, as a live list."""
    p.make(FOLLOWER, 1)
    p.set("raftLeader", p.node("b"))
    outcomes: List[int] = []
    p.obj._applyCommand(_COMMAND, lambda result, error: outcomes.append(error))
    p.obj._checkCommandsToApply()
    assert p.sent_to("b", "apply_command"), "the probe's command was not forwarded"
    return outcomes


def _probe_forwarded_command_failed_on_disconnect(p: Probe) -> bool:
    outcomes = _forward_one_command(p)
    p.transport._onNodeDisconnected(p.node("b"))  # the connection to the leader drops
    return outcomes == [FAIL_REASON.LEADER_CHANGED] and p.obj._getLeader() is None


def _probe_stale_command_response_answered(p: Probe) -> bool:
    outcomes = _forward_one_command(p)
    request_id = p.sent_to("b", "apply_command")[0]["request_id"]
    p.set("raftLastApplied", 2)  # index 2 was applied before the reply that puts the command there
    try:
        p.receive("b", {"type": "apply_command_response", "request_id": request_id, "log_idx": 2, "log_term": 1})
    except AssertionError:
        return False
    return outcomes == [FAIL_REASON.LEADER_CHANGED]


def _probe_forwarded_command_applied_once(p: Probe) -> bool:
    p.make(LEADER, 1)
    command = {"type": "apply_command", "command": _COMMAND, "request_id": 1}
    deliver = p.transport._onMessageReceived  # through the transport, as a real message arrives
    deliver(p.node("b"), command)
    deliver(p.node("b"), dict(command))  # the same message, delivered twice
    p.obj._checkCommandsToApply()
    once = sum(e[0] == _COMMAND for e in p.get("raftLog")) == 1
    p.transport._onNodeDisconnected(p.node("b"))  # b restarts: its request ids start again
    deliver(p.node("b"), dict(command))
    p.obj._checkCommandsToApply()
    return once and sum(e[0] == _COMMAND for e in p.get("raftLog")) == 2


def _probe_command_under_snapshot_answered(p: Probe) -> bool:
    with scratch_files("dump") as (dump,), Probe(dump=dump) as node:
        node.append(2, 1)
        node.append(3, 1)  # a deposed leader's own entry, its client waiting for index 3
        outcomes: List[int] = []
        node.get("commandsWaitingCommit")[3].append((1, lambda result, error: outcomes.append(error)))
        node.make(FOLLOWER, 2)
        # A one-chunk snapshot from the leader of term 2, ending at 5@2: it covers index 3.
        node.receive("b", snapshot_chunk(2, 5, snapshot_data(last=(5, 2), prev=(4, 2)), first=True, last=True))
        return node.obj.raftLastApplied == 5 and len(outcomes) == 1 and outcomes[0] != FAIL_REASON.SUCCESS


# --------------------------------------------------------------------------------------------
# The fixes
# --------------------------------------------------------------------------------------------
FIXES: List[Mutation] = [
    Mutation(
        name="membership_change_guard",
        title="Finding 1: a leader refuses a membership change while another is uncommitted",
        description=(
            "``__changeCluster`` refuses a change while ``__changeClusterIDx`` is set and clears it once "
            "that index is applied, but nothing ever set it.  With the fix an accepted change records "
            "the index ``_checkCommandsToApply`` appends it at, so a second change is refused "
            "(REQUEST_DENIED) until the first is applied, which Raft's one-at-a-time membership rule "
            "needs."),
        method="_SyncObj__changeCluster",
        old="    return self.__doChangeCluster(request)\n",
        new=("    # KNOWN FIX membership_change_guard (finding 1): remember where this change goes, so the\n"
             "    # guard above refuses the next one until this one is applied\n"
             "    if not self.__doChangeCluster(request):\n"
             "        return False\n"
             "    self.__changeClusterIDx = self.__getCurrentLogIndex() + 1\n"
             "    return True\n"),
        probe=_probe_membership_change_guard,
    ),
    Mutation(
        name="forwarded_command_failed_on_disconnect",
        title="Finding 6: a follower whose connection to the leader drops fails the commands it forwarded",
        description=(
            "Commands a follower forwarded wait in ``__commandsWaitingReply`` until the leader's reply, "
            "which is lost with the connection.  With the fix, losing the connection to the leader "
            "is a leader change to \"no leader known\": the follower forgets the leader and fails the "
            "waiting commands with LEADER_CHANGED (outcome unknown: the command may have reached the "
            "leader), as pysyncobj does when another leader appears.  Commands submitted while the "
            "connection is down then wait in the queue for a leader (``commandsWaitLeader``, the "
            "default; MISSING_LEADER without it) instead of being forwarded into a connection that "
            "drops them; the leader's next append_entries makes it the known leader again."),
        method="_SyncObj__onNodeDisconnected",
        old="    self.__connectedNodes.discard(node)\n",
        new=("    self.__connectedNodes.discard(node)\n"
             "    if node == self.__raftLeader:  # KNOWN FIX forwarded_command_failed_on_disconnect (finding 6)\n"
             "        self.__raftLeader = None\n"
             "        self.__onLeaderChanged()\n"),
        probe=_probe_forwarded_command_failed_on_disconnect,
    ),
    Mutation(
        name="stale_command_response_answered",
        title="Finding 13: a follower answers a command whose leader reply comes after its index was applied",
        description=(
            "Ported from pysyncobj 0.3.15: when the reply to a forwarded command names an index the "
            "follower has applied already, the command's outcome cannot be tracked any more; the "
            "callback is failed instead of ``assert idx > raftLastApplied`` raising out of the message "
            "handler (the callback was popped already, so the client was never answered).  0.3.15 "
            "answers UNKNOWN_OUTCOME, which the releases before it do not have: the fix answers "
            "LEADER_CHANGED, the other outcome-unknown reason."),
        method=ON_MESSAGE,
        old=("                assert idx > self.__raftLastApplied\n"
             "                self.__commandsWaitingCommit[idx].append((term, callback))\n"),
        new=("                if idx <= self.__raftLastApplied:  # KNOWN FIX stale_command_response_answered (finding 13)\n"
             "                    callback(None, FAIL_REASON.LEADER_CHANGED)\n"
             "                else:\n"
             "                    self.__commandsWaitingCommit[idx].append((term, callback))\n"),
        probe=_probe_stale_command_response_answered,
    ),
    Mutation(
        name="forwarded_command_applied_once",
        title="Finding 20: a leader appends a forwarded command once, however often it arrives",
        description=(
            "A leader appended every ``apply_command`` it received, so a network that duplicates "
            "messages turned one forwarded call into two entries.  With the fix the leader remembers, per "
            "sender, the request ids it has taken since that sender last connected, and drops a repeat. "
            "Request ids count from 1 in each incarnation of a follower or read-only node, and a restart "
            "drops its connections, so the memory is forgotten on disconnect.  The filter sits in front of the "
            "transport's callbacks, installed in ``__init__``: a closure, not an attribute, because "
            "pysyncobj serializes attributes set after ``__init__`` into its snapshots."),
        method="__init__",
        old=("    self.__transport.setOnNodeDisconnectedCallback(self.__onNodeDisconnected)\n"
             "    self.__transport.setOnMessageReceivedCallback(self.__onMessageReceived)\n"
             "    self.__transport.setOnReadonlyNodeConnectedCallback(self.__onReadonlyNodeConnected)\n"
             "    self.__transport.setOnReadonlyNodeDisconnectedCallback(self.__onReadonlyNodeDisconnected)\n"),
        new=("    # KNOWN FIX forwarded_command_applied_once (finding 20): a repeated apply_command is dropped\n"
             "    takenRequests = {}  # sender's node id -> request ids taken since it connected\n"
             "\n"
             "    def onNodeDisconnected(node):\n"
             "        takenRequests.pop(node.id, None)\n"
             "        self.__onNodeDisconnected(node)\n"
             "\n"
             "    def onReadonlyNodeDisconnected(node):\n"
             "        takenRequests.pop(node.id, None)\n"
             "        self.__onReadonlyNodeDisconnected(node)\n"
             "\n"
             "    def onMessageReceived(node, message):\n"
             "        if message.get('type') == 'apply_command' and 'request_id' in message:\n"
             "            taken = takenRequests.setdefault(node.id, set())\n"
             "            if message['request_id'] in taken:\n"
             "                return\n"
             "            taken.add(message['request_id'])\n"
             "        self.__onMessageReceived(node, message)\n"
             "\n"
             "    self.__transport.setOnNodeDisconnectedCallback(onNodeDisconnected)\n"
             "    self.__transport.setOnMessageReceivedCallback(onMessageReceived)\n"
             "    self.__transport.setOnReadonlyNodeConnectedCallback(self.__onReadonlyNodeConnected)\n"
             "    self.__transport.setOnReadonlyNodeDisconnectedCallback(onReadonlyNodeDisconnected)\n"),
        probe=_probe_forwarded_command_applied_once,
    ),
    Mutation(
        name="command_under_snapshot_answered",
        title="Finding 22: a node answers the commands waiting at the indexes a snapshot covers",
        description=(
            "A command's callback waits in ``__commandsWaitingCommit`` under its index and is called only "
            "when ``__applyLogEntries`` applies that index.  Loading a dump jumps the applied index to the "
            "dump's last entry without applying the entries before it, so the callbacks under those "
            "indexes were never called.  With the fix, loading a dump answers each of them with an "
            "unknown outcome (UNKNOWN_OUTCOME from 0.3.15, LEADER_CHANGED before): the snapshot does "
            "not say which term each index it covers had, so whether the command took effect is not known."),
        method=LOAD_DUMP,
        old=("        self.__onSetCodeVersion(0)\n"
             "    except:\n"),
        new=("        self.__onSetCodeVersion(0)\n"
             "        # KNOWN FIX command_under_snapshot_answered (finding 22): the dump covers every index up to\n"
             "        # raftLastApplied, which will never be applied one by one: answer what waits there\n"
             "        for idx in sorted(i for i in self.__commandsWaitingCommit if i <= self.__raftLastApplied):\n"
             "            for _term, callback in self.__commandsWaitingCommit.pop(idx):\n"
             "                callback(None, getattr(FAIL_REASON, 'UNKNOWN_OUTCOME', FAIL_REASON.LEADER_CHANGED))\n"
             "    except:\n"),
        probe=_probe_command_under_snapshot_answered,
    ),
]
