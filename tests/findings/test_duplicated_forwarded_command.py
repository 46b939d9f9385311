"""Finding: a forwarded command that the network delivers twice is appended and applied twice.

A follower forwards a client's command to the leader in an ``apply_command``
message carrying the follower's request id.  The leader appends whatever
``apply_command`` it receives: it keeps no record of the request ids it has
taken, so on a network that duplicates messages (the Raft paper's model, not
TCP) one call becomes two log entries, and a counter's ``add(5)`` adds ten.
The client is answered once, with the second entry's result (its request id
maps to the latest callback), so its own history is not linearizable either.
Found by ``ReplCounterUnreliableRaft`` fuzzing 0.3.17 with the known fixes
installed.  See FINDINGS.md.
"""
import pytest
from pysyncobj import SyncObj
from pysyncobj.batteries import ReplCounter

from harness import Cluster, DuplicateFilter
from harness.history import OK


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="pysyncobj 0.3.11-0.3.17 append every apply_command they receive")
def test_a_duplicated_forwarded_command_is_applied_once():
    with Cluster(3, seed=0, network="unreliable", node_class=SyncObj,
                 consumers=lambda node_id: {"counter": ReplCounter()}) as c:
        leader = c.wait_leader()
        follower = next(n for n in c.node_ids if n != leader)
        c.add_send_filter(follower, DuplicateFilter(1.0))  # its apply_command arrives twice
        op = c.call("add", "counter", 5, via=follower, consumer="counter")
        assert c.run_until(lambda: op.outcome == OK, 10)
        c.clear_all_filters()
        c.run_for(2)
        totals = {n: c.consumer(n, "counter").get() for n in c.node_ids}
        assert totals == {n: 5 for n in c.node_ids}, f"add(5) once, through {follower}: {totals}"
        assert op.result == 5
