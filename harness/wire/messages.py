"""The unit the simulated network moves: one pysyncobj message between two nodes."""
from __future__ import annotations

import dataclasses
import pickle
from typing import Any, Dict, Optional

#: pysyncobj's message types, plus ``snapshot`` for append_entries carrying a dump chunk.
MESSAGE_TYPES = frozenset({
    "request_vote", "response_vote", "append_entries", "snapshot", "next_node_idx",
    "apply_command", "apply_command_response", "timeout_now",
})


def release_message_types() -> frozenset:
    """The message types the installed pysyncobj can send: ``timeout_now`` only from 0.3.16, which
    added leadership transfer."""
    from pysyncobj import SyncObj

    if hasattr(SyncObj, "transferLeadership"):
        return MESSAGE_TYPES
    return MESSAGE_TYPES - {"timeout_now"}


def message_type(message: Dict[str, Any]) -> str:
    """Classify a pysyncobj message; snapshot transfer is told apart from log replication."""
    kind = message.get("type", "?")
    if kind == "append_entries" and "serialized" in message:
        return "snapshot"
    return kind


@dataclasses.dataclass
class Envelope:
    """A message in flight. ``payload`` is the pickled message: nodes never share objects."""

    seq: int
    src: str
    dst: str
    kind: str
    payload: bytes
    sent_at: float
    delay: float = 0.0  # extra virtual seconds added by filters
    epoch: int = 0  # connection incarnation it was sent on (fifo model)
    held: Optional[str] = None  # "send"/"recv" while a HoldFilter on that side keeps it
    receiver_life: int = 0  # which incarnation of ``dst`` it was sent to (its sockets die with it)

    @property
    def message(self) -> Dict[str, Any]:
        """A fresh decoded copy of the message, for predicates and reports."""
        return pickle.loads(self.payload)

    @property
    def term(self) -> Optional[int]:
        return self.message.get("term")

    def copy(self, seq: int) -> "Envelope":
        """A second copy of this message in flight (a duplicate), numbered ``seq``; not held."""
        return Envelope(seq=seq, src=self.src, dst=self.dst, kind=self.kind, payload=self.payload,
                        sent_at=self.sent_at, delay=self.delay, epoch=self.epoch,
                        receiver_life=self.receiver_life)

    def __str__(self) -> str:
        return f"{self.src}->{self.dst} {self.kind}#{self.seq}"
