"""Every client is answered: once the cluster is healed and live, no operation waits for good.

pysyncobj gives a callback no timeout.  A command it loses track of (a forwarded one whose reply went
with the connection, one whose log index another entry or a snapshot took) leaves its client waiting
forever, which no safety property and no linearizability check can see: an operation that never
completes may take effect at any time, or never, so every history stays explainable.  The machines
therefore give the healed cluster time to answer what is still waiting and call whatever is left, on
the nodes that follow the leader, a liveness violation.  Operations of a node that crashed or was
removed, or of a client that gave up, are not waiting (their outcome is already unknown).
"""
from __future__ import annotations

from typing import Iterable, List

from harness.check.invariants import Violation
from harness.history import PENDING, Operation
from harness.state import NodeState

#: How many waiting operations a violation lists by name (the count is always given).
_LISTED = 5


def clients_answered(ops: Iterable[Operation], waited: float, clock: str = "virtual") -> List[Violation]:
    """``[]`` if none of ``ops`` is still pending, else one ``clients_answered`` violation naming them;
    ``waited``: the seconds the healed, live cluster had to answer them, on its ``clock`` (``virtual`` in
    simulation, ``wall`` on real sockets)."""
    waiting = [op for op in ops if op.outcome == PENDING]
    if not waiting:
        return []
    listed = "; ".join(str(op) for op in waiting[:_LISTED]) + ("; …" if len(waiting) > _LISTED else "")
    return [Violation("clients_answered",
                      f"{len(waiting)} client operation(s) still unanswered {waited:g} {clock} seconds after "
                      f"the healed cluster committed a write, on nodes that follow the leader: {listed}",
                      nodes=tuple(sorted({op.via for op in waiting})))]


def follower_clients_answered(states: Iterable[NodeState], ops: Iterable[Operation], committed: int,
                              waited: float, clock: str = "virtual") -> List[Violation]:
    """:func:`clients_answered` for the clients of the nodes that follow the leader: up, and applied what
    it had committed when the wait began (``committed``).  A node that never caught up, e.g. a read-only
    node that knows none of the voters added since it started, cannot answer and is no evidence of a
    lost command."""
    following = {s.id for s in states if s.up and s.last_applied >= committed}
    return clients_answered([op for op in ops if op.via in following], waited, clock)
