"""A step-by-step record of one state-machine run: what a counterexample report is made of.

Each step keeps the rule and its arguments, the virtual time span, every
message delivered during it, each node's state after it and the trace digest
so far (so a replay can say at which step two runs diverged).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

from harness.contract import RecordingCluster
from harness.state import NodeState


def node_summary(s: NodeState) -> Dict[str, Any]:
    return {
        "id": s.id, "incarnation": s.incarnation, "up": s.up, "voter": s.voter, "role": s.role,
        "term": s.term, "voted_for": s.voted_for, "leader": s.leader, "commit_index": s.commit_index,
        "last_applied": s.last_applied, "first_index": s.first_index, "last_index": s.last_index,
        "membership": list(s.membership), "tail": [[e.index, e.term] for e in s.tail],
    }


@dataclasses.dataclass
class Step:
    rule: str
    args: Dict[str, Any]
    start: float
    end: Optional[float] = None
    nodes: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    messages: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    faults: Dict[str, List[str]] = dataclasses.field(default_factory=dict)  # node -> filters installed
    digest: Optional[str] = None

    def code(self) -> str:
        """The step as the line Hypothesis prints: ``state.rule(arg=value, ...)``."""
        return step_code(self.rule, self.args)


def step_code(rule: str, args: Dict[str, Any]) -> str:
    """``state.rule(arg=value, ...)``; sets (stored as sorted lists in JSON) print as frozensets."""
    return f"state.{rule}({', '.join(f'{k}={_literal(v)}' for k, v in sorted(args.items()))})"


def _literal(v: Any) -> str:
    if isinstance(v, (frozenset, set, list)):
        return f"frozenset({sorted(v)!r})"
    return repr(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (frozenset, set)):
        return sorted(v)
    return v


class Recorder:
    """Collects :class:`Step` records; the machine calls :meth:`begin` and :meth:`end` around each step.

    Without ``detailed`` only rules, arguments and times are kept: node states,
    messages and digests cost time on every step and only a report needs them.
    """

    def __init__(self, detailed: bool = False) -> None:
        self.detailed = detailed
        self.steps: List[Step] = []
        self._current: Optional[Step] = None

    def begin(self, rule: str, args: Dict[str, Any], now: float) -> None:
        self._current = Step(rule, dict(args), now)
        self.steps.append(self._current)

    def end(self, cluster: Optional[RecordingCluster], states: Sequence[NodeState]) -> None:
        """Close the current step at ``cluster.now`` (nothing to close without a step or a cluster);
        when detailed, keep ``states``, the messages delivered meanwhile, the filters and the digest."""
        step = self._current
        if step is None or cluster is None:
            return
        self._current = None
        step.end = cluster.now
        if not self.detailed:
            return
        step.nodes = [node_summary(s) for s in states]
        step.messages = cluster.take_message_log()
        step.faults = {n: [repr(f) for chain in cluster.filters(n) for f in chain] for n in cluster.node_ids}
        step.digest = cluster.trace_digest()

    def to_json(self) -> List[Dict[str, Any]]:
        return [dict(dataclasses.asdict(s), args={k: _jsonable(v) for k, v in s.args.items()}, code=s.code())
                for s in self.steps]
