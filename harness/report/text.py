"""Failure text: the cluster at the moment a property broke, for a human reading a test log."""
from __future__ import annotations

import json
import os
from typing import Sequence

from harness.adapter.patching import installed as installed_patches
from harness.state import NodeState


def node_table(states: Sequence[NodeState]) -> str:
    """One line per node: role, term, vote, commit, applied and the log's extent and tail."""
    rows = ["node  inc  role       term  voted  leader  commit  applied  log        tail"]
    for s in states:
        if not s.up:
            rows.append(f"{s.id:<5} {s.incarnation:<4} crashed")
            continue
        tail = " ".join(str(e) for e in s.tail)
        rows.append(f"{s.id:<5} {s.incarnation:<4} {s.role:<10} {s.term:<5} {str(s.voted_for):<6} "
                    f"{str(s.leader):<7} {s.commit_index:<7} {s.last_applied:<8} "
                    f"{s.first_index}..{s.last_index:<7} {tail}")
    return "\n".join(rows)


def recent_messages(cluster, limit: int = 20) -> str:
    """The last ``limit`` delivered messages with their virtual delivery time."""
    lines = []
    for at, env in cluster.recent_messages[-limit:]:
        msg = env.message
        extra = []
        for key in ("term", "prevLogIdx", "prevLogTerm", "commit_index", "next_node_idx", "last_log_index",
                    "last_log_term"):
            if key in msg:
                extra.append(f"{key}={msg[key]}")
        if msg.get("entries"):
            extra.append("entries=" + ",".join(f"{e[1]}@{e[2]}" for e in msg["entries"]))
        lines.append(f"t={at:.4f} {env.src}->{env.dst} {env.kind} {' '.join(extra)}")
    return "\n".join(lines) or "(none)"


def describe(cluster) -> str:
    """Everything a failure message should carry beyond the broken property itself."""
    patches = installed_patches()
    patched = f" patched with {', '.join(patches)}" if patches else ""
    return (f"pysyncobj {cluster.pysyncobj_version}{patched}, network={cluster.network_model}, seed={cluster.seed}, "
            f"t={cluster.now:.4f}\n{node_table([cluster.state(i) for i in cluster.node_ids])}\n"
            f"last messages delivered:\n{recent_messages(cluster)}")


def write_counterexample(directory: str, machine, error: BaseException) -> str:
    """Write ``counterexample.json`` for a failed run of ``machine``; returns its path.

    Holds what a reader or ``replay`` needs: the steps as data and as code,
    the pysyncobj version and the patches installed on it, channel model and
    seed, the broken property (with, from a stream checker, the time, node and message of the
    event that broke it), and per
    step the node states, the messages delivered and the trace digest.
    """
    cluster = machine.cluster
    violations = [dict(invariant=v.invariant, message=v.message, nodes=list(v.nodes), terms=list(v.terms),
                       indexes=list(v.indexes), at=v.at, node=v.node, handling=v.handling)
                  for v in getattr(error, "violations", ())]
    doc = {
        "format": 1,
        "machine": f"{type(machine).__module__}.{type(machine).__qualname__}",
        "pysyncobj_version": cluster.pysyncobj_version if cluster else None,
        "patches": installed_patches(),  # harness.adapter.patching patches in effect (known fixes, seeded bugs)
        "network": machine.network,
        "seed": cluster.seed if cluster else None,
        "error": type(error).__name__,
        "message": str(error).split("\n")[0],
        "violations": violations or [dict(invariant=type(error).__name__, message=str(error).split("\n")[0],
                                          nodes=[], terms=[], indexes=[])],
        "details": str(error),
        "steps": machine.recorder.to_json(),
    }
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "counterexample.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=repr)
    os.replace(tmp, path)
    return path
