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
_S = "tests/scenarios/"
_ST = "tests/test_storage.py::"
#: Why a fix outside ``SyncObj`` cannot be a fix here: the engine (:mod:`harness.adapter.patching`)
#: patches methods of ``pysyncobj.syncobj.SyncObj`` only.
_NOT_SYNCOBJ = "the patch engine patches SyncObj methods only"
_BUGS: List[Bug] = [
    Bug(1, "a second membership change is accepted before the first commits", "0.3.11", "0.3.17", "fifo",
        (_F + "test_concurrent_membership_change.py::test_second_membership_change_waits_for_the_first",),
        fix="membership_change_guard"),
    Bug(2, "a stale append_entries truncates committed entries", "0.3.11", "0.3.17", "unreliable",
        (_F + "test_reordered_append_entries.py::test_stale_append_entries_never_moves_commit_index_back",),
        fix="truncate_on_conflict_only"),
    Bug(3, "a deposed leader acknowledges its uncommitted writes when a snapshot reaches it", "0.3.11", "0.3.17",
        "fifo", (_F + "test_snapshot_chunk_commits_stale_entries.py::"
                      "test_snapshot_transfer_never_commits_the_receivers_own_stale_entries",),
        fix="snapshot_chunk_commit"),
    Bug(4, "a restarted node forgets its term and vote", "0.3.11", "0.3.15", "any",
        (_F + "test_restart_forgets_term_and_vote.py::test_a_restarted_node_keeps_its_term_and_vote",
         _S + "test_durability.py::test_restarted_node_remembers_its_term_and_vote",
         _S + "test_pysyncobj_ports.py::test_journal_restart_and_replay_twice"),
        fix="persist_term_and_vote"),
    Bug(5, "restarting between writing a dump and truncating the log loses acknowledged entries", "0.3.11",
        "0.3.17", "fifo",
        (_S + "test_durability.py::test_restart_between_dump_and_log_truncation_keeps_acknowledged_entries",
         _ST + "test_crash_between_dump_and_truncate_drops_acknowledged_entries_after_the_dump"),
        fix="dump_keeps_journal_tail"),
    Bug(6, "a forwarded write is never answered when the follower's connection to the leader drops", "0.3.11",
        "0.3.17", "fifo",
        (_S + "test_consistency.py::test_a_forwarded_write_lost_with_its_connection_is_answered",
         _F + "test_forwarded_write_while_disconnected.py::"
              "test_a_write_forwarded_while_the_connection_is_down_is_answered"),
        fix="forwarded_command_failed_on_disconnect"),
    Bug(7, "a leader commits entries of earlier terms by counting replicas", "0.3.11", "0.3.11", "fifo",
        (_S + "test_raft_paper.py::test_new_leader_commits_an_old_term_entry_only_with_an_entry_of_its_own_term",),
        fix="commit_current_term_only"),
    Bug(8, "a follower takes a new leader's lower commit index", "0.3.11", "0.3.11", "fifo",
        (_S + "test_cluster_scenarios.py::test_three_way_split_has_no_majority_and_commits_nothing",
         _S + "test_consistency.py::test_stale_leader_serves_stale_local_reads_but_no_stale_log_reads"),
        fix="follower_commit_monotonic"),
    Bug(9, "a full disk leaves a gap in the journal; after a restart the entries behind the gap take the "
           "missing indexes", "0.3.11", "0.3.17", "fifo",
        (_ST + "test_disk_full_on_a_follower_leaves_a_gap_in_its_journal",
         _ST + "test_disk_full_gap_restarted_early_leaves_a_follower_stuck_for_good",
         _ST + "test_disk_full_on_the_leader_commits_writes_it_never_acknowledges"),
        no_fix=("the fix belongs in FileJournal.add (pysyncobj/journal.py), which appends to its in-memory "
                "list before writing and neither undoes that nor keeps its offset when the write fails; "
                + _NOT_SYNCOBJ + ", and SyncObj only sees the write's exception escape __raftLog.add at "
                "one of its call sites, after the entry is already in the in-memory log"),
        storage=True),
    Bug(10, "a torn dump leaves a node that never applies anything, and it spreads the tear", "0.3.11",
        "0.3.17", "fifo",
        (_ST + "test_torn_dump_leaves_a_restarted_node_that_never_applies_and_spreads_the_tear",),
        no_fix=("the tear comes from Serializer, which writes and renames the dump without fsync "
                "(pysyncobj/serializer.py), and " + _NOT_SYNCOBJ + ".  What SyncObj does next (carry on "
                "with an empty state machine, answer success=True for a received dump it could not load) "
                "cannot be repaired in SyncObj: the state the dump held is gone from that node, and a "
                "leader with a torn dump has no other snapshot to send"),
        storage=True),
    Bug(11, "without fsync, a power cut loses what a node acknowledged: its log entries and its vote",
        "0.3.11", "0.3.17", "fifo",
        (_ST + "test_power_loss_makes_a_node_forget_its_vote_and_elect_two_leaders_in_one_term[True]",
         _ST + "test_power_loss_on_a_follower_then_a_leader_crash_loses_acknowledged_writes"),
        no_fix=("durability needs an fsync of the .meta file (MetaStorer.storeMeta) and an msync of the "
                "journal (FileJournal.add) before a node answers, both in pysyncobj/journal.py, and "
                + _NOT_SYNCOBJ + "; the storage model (harness.sim.storage) would also have to honour an "
                "fsync, as it honours only the journal's msync and the OS's writebacks"),
        storage=True),
    Bug(12, "a follower installs a snapshot older than its log: its commit index and state machine go back",
        "0.3.11", "0.3.17", "fifo",
        (_F + "test_stale_snapshot_rolls_back_follower.py::"
              "test_stale_snapshot_never_moves_a_followers_commit_index_or_state_back",
         _F + "test_stale_snapshot_rolls_back_follower.py::test_a_check_per_step_sees_the_rollback_too",
         _F + "test_stale_snapshot_rolls_back_follower.py::"
              "test_acknowledged_writes_survive_a_stale_snapshot_and_two_crashes"),
        fix="stale_snapshot_keeps_log"),
    Bug(13, "a reply to a forwarded command that comes after its index was applied raises in the follower, "
            "and its client is never answered", "0.3.11", "0.3.14", "unreliable",
        (_F + "test_stale_command_response.py::test_a_late_reply_to_a_forwarded_command_is_answered",),
        fix="stale_command_response_answered"),
    Bug(14, "a node restarted from an older dump keeps a stored commit index past its log", "0.3.11", "0.3.15",
        "fifo", (_F + "test_commit_index_past_restored_log.py::test_a_node_restarted_from_an_older_dump_"
                      "never_claims_a_commit_index_past_its_log",),
        fix="commit_index_clamped_to_log", storage=True),
    Bug(15, "a candidate counts a duplicated vote twice and wins without a majority", "0.3.11", "0.3.17",
        "unreliable", (_F + "test_duplicated_vote.py::test_a_duplicated_vote_counts_once",),
        fix="count_each_vote_once"),
    Bug(16, "a snapshot message without data commits the receiver's own stale entries", "0.3.11", "0.3.17",
        "fifo", (_F + "test_snapshot_offer_commits_stale_entries.py::test_a_snapshot_message_without_data_never_"
                      "commits_the_receivers_own_entries",
                 _F + "test_snapshot_offer_commits_stale_entries.py::test_the_fix_for_finding_3_does_not_cover_it",
                 _F + "test_snapshot_offer_commits_stale_entries.py::test_a_follower_that_cannot_store_snapshots_"
                      "commits_its_own_entries"),
        fix="snapshot_offer_commit"),
    Bug(17, "a battery call that raises stops every node's state machine for good", "0.3.11", "0.3.17", "any",
        tuple(_F + "test_battery_call_that_raises_halts_cluster.py::test_a_call_that_raises_does_not_stop_later_"
              f"calls[{case}]" for case in ("ReplSet.remove", "ReplSet.pop", "ReplList.remove", "ReplList.pop")),
        no_fix=("the exception comes from the battery's own method (ReplSet.remove, ReplList.pop, ...) while "
                "SyncObj.__applyLogEntries applies a committed entry; what a replicated call that raises should "
                "do (skip the entry on every replica, answer its caller with an error) is a change to pysyncobj's "
                "apply contract, not a patch of one snippet")),
    Bug(18, "ReplSet.pop removes different elements on different replicas", "0.3.11", "0.3.17", "any",
        (_F + "test_replset_pop_diverges.py::test_replicas_pop_the_same_element[0]",
         _F + "test_replset_pop_diverges.py::test_replicas_pop_the_same_element[1]"),
        no_fix=("ReplSet.pop is Python's set.pop, whose choice depends on the set object's history; a "
                "deterministic choice (e.g. the smallest element) changes the battery's documented behaviour "
                "and its snapshot format, which is for pysyncobj to decide")),
    Bug(19, "ReplList item assignment fails until code version 1 is enabled", "0.3.11", "0.3.17", "any",
        (_F + "test_repllist_setitem_needs_code_version.py::test_setitem_works_on_a_fresh_cluster",),
        no_fix=("ReplList.__setitem__ is declared @replicated(ver=1) in pysyncobj/batteries.py; the harness' "
                "patch engine only patches SyncObj methods, and the cure is a one-word change of that "
                "declaration in pysyncobj")),
    Bug(20, "a forwarded command that the network delivers twice is appended and applied twice", "0.3.11",
        "0.3.17", "unreliable",
        (_F + "test_duplicated_forwarded_command.py::test_a_duplicated_forwarded_command_is_applied_once",),
        fix="forwarded_command_applied_once"),
    Bug(21, "a success reply from an earlier leadership counts a follower for entries it does not hold", "0.3.11",
        "0.3.17", "fifo",
        (_F + "test_stale_success_reply.py::test_a_leader_counts_only_replicas_that_hold_the_entry",
         _F + "test_stale_success_reply.py::test_an_acknowledged_write_survives_a_stale_success_reply"),
        fix="replies_of_current_term_only"),
    Bug(22, "a command whose log index a received snapshot covers is never answered", "0.3.11", "0.3.17", "fifo",
        (_F + "test_command_covered_by_snapshot.py::test_a_write_under_a_received_snapshot_is_answered",),
        fix="command_under_snapshot_answered"),
    Bug(23, "a restarted node forgets a membership change its log holds but it had not seen committed",
        "0.3.11", "0.3.17", "fifo",
        (_F + "test_restart_forgets_uncommitted_membership.py::"
              "test_a_restarted_node_counts_the_voters_of_its_logs_latest_membership_entry",),
        fix="membership_of_the_log_on_restart"),
]

#: Every known bug by id.
LEDGER: Dict[int, Bug] = {b.id: b for b in _BUGS}


def known_fixes(version: Tuple[int, ...] = VERSION_INFO) -> List[str]:
    """The fixes of every bug the given (default: the installed) release has, in ledger order: what
    ``--known-fixes`` installs.  They install together (``tests/test_ledger.py`` checks it per release)."""
    return [b.fix for b in LEDGER.values() if b.fix and b.affects(version)]


def applicable(network: str, version: Tuple[int, ...] = VERSION_INFO) -> List[Bug]:
    """The bugs with a fix that the installed release has and a machine on ``network`` can reach."""
    return [b for b in LEDGER.values() if b.fix and b.affects(version) and b.reachable_on(network)]


def by_fix(name: str) -> Optional[Bug]:
    """The ledger entry whose fix is ``name`` (None for an injected bug or an unknown patch)."""
    return next((b for b in LEDGER.values() if b.fix == name), None)
