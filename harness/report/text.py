"""Failure text: the cluster at the moment a property broke, for a human reading a test log."""
from __future__ import annotations

from typing import Sequence

from harness.adapter.patching import installed as installed_patches
from harness.contract import ClusterLike
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


def recent_messages(cluster: ClusterLike, limit: int = 20) -> str:
    """The last ``limit`` delivered messages with their delivery time (the cluster's seconds)."""
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


def pysyncobj_log(cluster, limit: int = 20) -> str:
    """What pysyncobj itself logged (:mod:`harness.sim.pysyncobj_log`): the first ``limit`` CRITICAL
    lines, then the last ``limit`` lines; "" if it logged nothing (or the cluster does not capture it)."""
    log = getattr(cluster, "pysyncobj_log", None)
    if log is None or not log.total:
        return ""
    parts = []
    if log.critical:
        shown = log.critical[:limit]
        parts.append(f"pysyncobj CRITICAL lines, first {len(shown)} of {log.critical_total}:")
        parts.extend(str(line) for line in shown)
    tail = list(log.lines)[-limit:]
    parts.append(f"pysyncobj log, last {len(tail)} of {log.total} lines:")
    parts.extend(str(line) for line in tail)
    return "\n".join(parts)


def describe(cluster: ClusterLike) -> str:
    """Everything a failure message should carry beyond the broken property itself."""
    patches = installed_patches()
    patched = f" patched with {', '.join(patches)}" if patches else ""
    logged = pysyncobj_log(cluster)
    return (f"pysyncobj {cluster.pysyncobj_version}{patched}, network={cluster.network_model}, seed={cluster.seed}, "
            f"t={cluster.now:.4f}\n{node_table([cluster.state(i) for i in cluster.node_ids])}\n"
            f"last messages delivered:\n{recent_messages(cluster)}" + (f"\n{logged}" if logged else ""))
