"""Finding 16: a snapshot message with no data commits the receiver's own stale entries.

A leader sends a follower that needs a snapshot (its ``nextIndex`` is at or
below the leader's first log entry) an ``append_entries`` built from
``Serializer.getTransmissionData``.  That returns ``None`` while the leader's
serializer is busy: in pysyncobj's default ``useFork=True`` for as long as the
forked child writes the dump, in-process (``useFork=False``, the simulation)
from the tick that called ``serialize()`` until the next ``checkSerializing()``.
The message is then ``{'serialized': None, 'commit_index': C}`` with no
``prevLogIdx``.  On the receiver it matches neither the entries branch nor the
``serialized is not None`` branch, and falls through to the commit-index update
``min(C, own last index)``.  A deposed leader thereby commits and applies
entries it appended alone in its old term, and reports SUCCESS to their
clients. This is the case the fix for finding 3 (``snapshot_chunk_commit``,
which covers chunks only) misses.

A follower that cannot store the snapshot it receives (``dump_write_fails``)
stays a follower that needs a snapshot at every heartbeat, so any compaction
on the leader hits it. That is how the fuzzer found it
(``tests/cases/dump-write-failure-commits-stale-entry.json``). The storage fault
only widens the window; the first test needs none.  See FINDINGS.md.
"""
import pytest

from harness import Cluster, SafetyChecker, SafetyViolation
from harness.adapter.patching import inject

# While its serializer is busy the leader's send loop spins, sending one data-less message after
# another until appendEntriesPeriod has passed on a clock that moves only when read: with the default
# read_step (1 us) that is 100,000 messages per heartbeat, each checked; at 10 us per read, 10,000.
READ_STEP = 1e-5

affected = pytest.mark.xfail(strict=True, raises=SafetyViolation,
                             reason="pysyncobj 0.3.11-0.3.17 advance the commit index on a snapshot "
                                    "message that carries no data")


def _deposed_leader_with_its_own_entries(c):
    """The old leader appends 5 entries alone; the others commit 11 more and compact past them.
    Returns (old, new): old's log is 1..8, mostly of term 1, none of it past index 3 committed."""
    old = c.wait_leader()
    c.must_put("k", 0)
    c.isolate_node(old)
    for i in range(5):
        c.put("k", 100 + i, via=old)  # appended by the soon-deposed leader alone
    c.run_for(3)
    new = c.wait_leader()
    assert new != old
    for i in range(10):
        c.must_put("k", 200 + i)
    c.force_snapshot(new)  # new's log now starts past old's last entry: old needs a snapshot
    c.run_for(1)
    return old, new


def _checker(c, old):
    """A run_until predicate checking after every delivered message; on a violation it says which
    message old had just handled."""
    checker, cursor = SafetyChecker(), [0]

    def check():
        done, cursor[0] = c.history.completed_since(cursor[0])
        errors = [e for e in c.node_errors if not c.storage.is_injected(e)]
        try:
            checker.step(c.observe(), done, errors)
        except SafetyViolation:
            _, last = c.recent_messages[-1]
            check.culprit = (last.dst, last.kind, last.message.get("serialized", "absent"))
            raise
        return False

    check.culprit = None
    return check


def _reconnect_while_the_leader_dumps(seed: int) -> None:
    with Cluster(3, seed=seed, read_step=READ_STEP) as c:
        old, new = _deposed_leader_with_its_own_entries(c)
        check = _checker(c, old)
        c.must_put("k", 300)  # something new for the next dump
        c.clear_all_filters()  # old's connection comes back after reconnect_delay (0.2 s)
        c.run_for(0.15)
        c.force_snapshot(new)  # new's first heartbeat to old goes out while its serializer is busy
        try:
            c.run_until(check, timeout=2)
        finally:
            if check.culprit is not None:
                assert check.culprit == (old, "snapshot", None), check.culprit


def _follower_cannot_store_the_snapshot(seed: int) -> None:
    with Cluster(3, seed=seed, read_step=READ_STEP) as c:
        old, new = _deposed_leader_with_its_own_entries(c)
        check = _checker(c, old)
        c.storage.enable("dump_write_fails", old)  # every snapshot sent to old fails to be stored
        c.clear_all_filters()
        c.run_until(check, timeout=2)
        try:
            for attempt in range(4):
                c.must_put("k", 300 + attempt)
                if attempt % 2:
                    c.tick()  # the other phase of the two-tick heartbeat period
                c.force_snapshot(new)  # the tick after the dump, new's heartbeat to old carries no data
                c.run_until(check, timeout=1)
        finally:
            if check.culprit is not None:
                assert check.culprit == (old, "snapshot", None), check.culprit


@affected
def test_a_snapshot_message_without_data_never_commits_the_receivers_own_entries():
    """Unmodified pysyncobj, no storage fault: the violating message is the ``serialized=None`` one."""
    _reconnect_while_the_leader_dumps(seed=0)


@affected
def test_the_fix_for_finding_3_does_not_cover_it():
    with inject("snapshot_chunk_commit", "stale_snapshot_keeps_log"):
        _reconnect_while_the_leader_dumps(seed=0)


@affected
def test_a_follower_that_cannot_store_snapshots_commits_its_own_entries():
    """The fuzzer's case: the receiver's dump writes fail, the two known fixes are in."""
    with inject("snapshot_chunk_commit", "stale_snapshot_keeps_log"):
        _follower_cannot_store_the_snapshot(seed=0)


# Seeds 1 and 5 run into finding 8 on 0.3.11 (a follower's commit index goes back), a bug of its own.
SEEDS = (0, 2, 3, 4)


def test_the_known_fix_removes_every_violation():
    """``harness.adapter.fixes.KNOWN_FIXES['snapshot_offer_commit']`` with the fix for finding 3 (without it, the next
    message, a real first chunk, commits the same entries)."""
    with inject("snapshot_chunk_commit", "snapshot_offer_commit"):
        for seed in SEEDS:
            _reconnect_while_the_leader_dumps(seed)
    with inject("snapshot_chunk_commit", "stale_snapshot_keeps_log", "snapshot_offer_commit"):
        for seed in SEEDS:
            _reconnect_while_the_leader_dumps(seed)
            _follower_cannot_store_the_snapshot(seed)
