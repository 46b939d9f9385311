"""The ledger: every pysyncobj bug the harness knows, one entry each, the single source of truth.

FINDINGS.md, the regression tests in ``tests/findings/`` and triage all follow this table (a test
checks that FINDINGS.md agrees on ids, titles and releases).  An entry names the releases it affects,
the channel model it needs, its regression test and, where one is possible in-process, the name of its
fix in :mod:`harness.adapter.fixes`; where none is, it says why.  Triage labels a failure ``known: N``
only when installing bug N's fix makes the same counterexample pass.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

from harness.adapter.observe import VERSION_INFO

#: The releases the harness supports, oldest first.
RELEASES: Tuple[str, ...] = ("0.3.11", "0.3.12", "0.3.13", "0.3.14", "0.3.15", "0.3.16", "0.3.17")


def _release(text: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


@dataclasses.dataclass(frozen=True)
class Bug:
    """One known pysyncobj bug."""

    id: int
    title: str
    first: str  # first affected release
    last: str  # last affected release (the newest supported one when it is still open)
    network: str  # "fifo" (pysyncobj's TCP contract), "unreliable" (needs reordering/duplication) or "any"
    regression: Tuple[str, ...]  # test paths (node ids) that show it on unmodified pysyncobj
    fix: Optional[str] = None  # name in harness.adapter.fixes.KNOWN_FIXES
    no_fix: str = ""  # why there is no in-process fix, when fix is None
    storage: bool = False  # needs a storage failpoint (harness.sim.storage) on top of the network

    @property
    def releases(self) -> str:
        return self.first if self.first == self.last else f"{self.first} – {self.last}"

    def affects(self, version: Tuple[int, ...] = VERSION_INFO) -> bool:
        """Whether the given (default: the installed) pysyncobj release has this bug."""
        return _release(self.first) <= tuple(version[:3]) <= _release(self.last)

    def reachable_on(self, network: str) -> bool:
        return self.network in ("any", network) or (self.network == "fifo" and network == "unreliable")

    @property
    def label(self) -> str:
        return f"known pysyncobj bug {self.id}: {self.title}"


_F = "tests/findings/"
_BUGS: List[Bug] = [
    Bug(1, "a second membership change is accepted before the first commits", "0.3.11", "0.3.17", "fifo",
        (_F + "test_concurrent_membership_change.py",)),
    Bug(2, "a stale append_entries truncates committed entries", "0.3.11", "0.3.17", "unreliable",
        (_F + "test_reordered_append_entries.py",)),
    Bug(3, "a deposed leader acknowledges its uncommitted writes when a snapshot reaches it", "0.3.11", "0.3.17",
        "fifo", (_F + "test_snapshot_chunk_commits_stale_entries.py",), fix="snapshot_chunk_commit"),
    Bug(4, "a restarted node forgets its term and vote", "0.3.11", "0.3.15", "any",
        (_F + "test_restart_forgets_term_and_vote.py",)),
    Bug(5, "restarting between writing a dump and truncating the log loses acknowledged entries", "0.3.11",
        "0.3.17", "fifo",
        ("tests/scenarios/test_durability.py::test_restart_between_dump_and_log_truncation_keeps_acknowledged_entries",)),
    Bug(6, "a forwarded write is never answered when the follower's connection to the leader drops", "0.3.11",
        "0.3.17", "fifo",
        ("tests/scenarios/test_consistency.py::test_a_forwarded_write_lost_with_its_connection_is_answered",)),
    Bug(7, "a leader commits entries of earlier terms by counting replicas", "0.3.11", "0.3.11", "fifo",
        ("tests/scenarios/test_raft_paper.py::test_new_leader_commits_an_old_term_entry_only_with_an_entry_of_its_own_term",)),
    Bug(8, "a follower's commit index goes backwards", "0.3.11", "0.3.11", "fifo",
        ("tests/scenarios/test_cluster_scenarios.py",)),
    Bug(12, "a follower installs a snapshot older than its log", "0.3.11", "0.3.17", "fifo",
        (_F + "test_stale_snapshot_rolls_back_follower.py",), fix="stale_snapshot_keeps_log"),
]

#: Every known bug by id.
LEDGER: Dict[int, Bug] = {b.id: b for b in _BUGS}


def applicable(network: str, version: Tuple[int, ...] = VERSION_INFO) -> List[Bug]:
    """The bugs with a fix that the installed release has and a machine on ``network`` can reach."""
    return [b for b in LEDGER.values() if b.fix and b.affects(version) and b.reachable_on(network)]


def by_fix(name: str) -> Optional[Bug]:
    """The ledger entry whose fix is ``name`` (None for an injected bug or an unknown patch)."""
    return next((b for b in LEDGER.values() if b.fix == name), None)
