"""Finding 6, second path: a write forwarded while the follower's connection to the leader is down is never answered.

A follower forwards a client's command to the leader it knows and waits for
the reply with no timeout.  When the connection to that leader has just
broken (a lost message breaks a TCP connection; pysyncobj reconnects a moment
later), the transport drops the ``apply_command`` (``send`` returns False,
which ``_checkCommandsToApply`` ignores), and the leader never changes, so
nothing fails the command: the client waits forever.  The scenario catalogue's
``test_a_forwarded_write_lost_with_its_connection_is_answered`` is the first
path (the command is lost with the connection).  See FINDINGS.md.
"""
import pytest

from harness import Cluster, MessageTypeFilter
from harness.history import PENDING


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="pysyncobj 0.3.11-0.3.17 forward commands to a leader they are not connected to")
def test_a_write_forwarded_while_the_connection_is_down_is_answered():
    with Cluster(3, seed=36) as c:
        leader = c.wait_leader()
        c.must_put("k", 0)
        follower = next(n for n in c.node_ids if n != leader)
        c.add_send_filter(follower, MessageTypeFilter(["apply_command"]))
        c.put("k", 1, via=follower)
        c.run_for(0.1)  # the apply_command is dropped: the connection breaks, back after reconnect_delay (0.2 s)
        c.clear_all_filters()
        op = c.put("k", 2, via=follower)  # forwarded into the broken connection
        c.run_for(30)
        assert c.leader() == leader
        assert op.outcome != PENDING, "a write forwarded while the connection was down was never answered"
