"""Finding (0.3.11 – 0.3.14): a late reply to a forwarded command raises in the follower; its client is never answered.

A follower forwards a client's command to the leader and waits for the
``apply_command_response`` that names the command's log index.  On a network
that reorders messages the reply can arrive after the append_entries that
carried the entry and the one that committed it: the follower has applied the
index already.  Before 0.3.15 the handler then fails ``assert idx >
raftLastApplied`` after popping the callback, so the exception escapes the
message handler (``no_node_errors``) and the client never hears back; 0.3.15
answers ``UNKNOWN_OUTCOME`` instead.  Over TCP the reply is sent before the
entry on the same connection, so this needs the ``unreliable`` network.  See
FINDINGS.md.
"""
import pytest

from harness import Cluster, HoldFilter, SafetyChecker, SafetyViolation
from harness.adapter.observe import VERSION_INFO
from harness.history import PENDING


@pytest.mark.xfail(VERSION_INFO < (0, 3, 15), strict=True, raises=SafetyViolation,
                   reason="pysyncobj < 0.3.15 asserts that a forwarded command's index is not applied yet")
def test_a_late_reply_to_a_forwarded_command_is_answered():
    with Cluster(3, seed=0, network="unreliable") as c:
        leader = c.wait_leader()
        c.must_put("k", 0)
        follower = next(n for n in c.node_ids if n != leader)
        reply = HoldFilter(["apply_command_response"])
        c.add_recv_filter(follower, reply)
        op = c.put("k", 1, via=follower)
        assert c.run_until(lambda: c.node(follower).local_get("k") == 1, 3)  # applied, reply still held
        assert reply.release() == 1
        c.run_for(1)
        SafetyChecker().step(c.observe(), [], c.node_errors)  # no_node_errors
        assert op.outcome != PENDING, "the client of a forwarded command was never answered"
