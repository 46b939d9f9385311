"""Raft safety of pysyncobj under storage faults (harness.sim.storage failpoints) as well as everything else.

``StorageFaultRaft`` adds two rules to :class:`~harness.fuzz.machine.RaftMachine`:
switch one of the named failpoints on or off for one node (or the leader).
``PowerLossRaft`` is the same with ``journal_unflushed_lost`` on for every
node from the start: every crash is a power cut.  On unmodified pysyncobj
both find violations in longer runs (a few hundred examples: durability,
election_safety, log_matching), as the deterministic scenarios in
``tests/test_storage.py`` predict: unflushed journal writes are
acknowledged, a crash between a dump and the log truncation drops
acknowledged entries, a full disk leaves a gap in the journal.  They are
marked ``storage`` and run only on request::

    pytest properties/ --raft-storage

(shrinking their counterexamples is slow: minutes.)  ``DumpWriteFailureRaft``
switches only the failpoint pysyncobj survives (its dump writes fail: it
keeps its log and retries); it runs by default, bounded.

Injected I/O errors that escape pysyncobj (an ``OSError(ENOSPC)`` out of a
tick) are how pysyncobj reports them, not violations; any other exception
inside a node still is.  The liveness check at the end switches every
failpoint off first, like it heals the network.
"""
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

from harness.check.invariants import NoNodeErrors, Violation
from harness.fuzz.shards import raft_machine_tests
from harness.fuzz.machine import RaftMachine, note, targets
from harness.sim.storage import FAILPOINTS


class _NoUnexpectedNodeErrors(NoNodeErrors):
    """``no_node_errors``, except for the injected storage faults themselves."""

    def __init__(self, machine) -> None:
        super().__init__()
        self.machine = machine

    def check(self, states):
        new = self.errors[self._seen:]
        self._seen = len(self.errors)
        storage = self.machine.cluster.storage
        return [Violation(self.name, str(e), nodes=(e.node,)) for e in new if not storage.is_injected(e)]


def storage_rules(failpoints):
    """A RaftMachine subclass whose extra rules switch ``failpoints`` on and off, one node at a time."""

    class StorageRules(RaftMachine):
        #: Failpoints on for every node of the cluster from the start (the rules can still switch them).
        always_on: tuple = ()
        #: Linux writes a dirty page back once it is 30 s old (``dirty_expire_centisecs``), so that much
        #: unflushed data is normal; the StorageFaults default (5 s) is kinder.
        writeback_interval = 30.0

        def __init__(self) -> None:
            super().__init__()
            tolerant = _NoUnexpectedNodeErrors(self)
            invariants = self.checker.invariants
            invariants[invariants.index(self.checker.node_errors)] = self.checker.node_errors = tolerant

        # RaftMachine.start_cluster assigns ``self.cluster``: configure its storage right there.
        @property
        def cluster(self):
            return self.__dict__.get("_cluster")

        @cluster.setter
        def cluster(self, cluster) -> None:
            self.__dict__["_cluster"] = cluster
            if cluster is not None:
                cluster.storage.writeback_interval = self.writeback_interval
                for failpoint in self.always_on:
                    for node in cluster.node_ids:
                        cluster.storage.enable(failpoint, node)

        @rule(failpoint=st.sampled_from(failpoints), node=targets)
        def storage_fault_on(self, failpoint: str, node: str) -> None:
            """Switch a storage failpoint on for ``node`` or the leader (see harness.sim.storage)."""
            node = self._via(node)
            if node is not None:
                self.cluster.storage.enable(failpoint, node)
                note(f"storage fault: {failpoint}")
            self._settle()

        @rule(failpoint=st.sampled_from(failpoints), node=targets)
        def storage_fault_off(self, failpoint: str, node: str) -> None:
            node = self._via(node)
            if node is not None:
                self.cluster.storage.disable(failpoint, node)
            self._settle()

        def _check_liveness(self) -> None:
            self.cluster.storage.clear()
            super()._check_liveness()

    return StorageRules


class StorageFaultRaft(storage_rules(FAILPOINTS)):
    """Every storage failpoint, on top of network faults, crashes, snapshots and membership changes."""


class PowerLossRaft(storage_rules(FAILPOINTS)):
    """Every crash is a power loss (``journal_unflushed_lost`` on for every node from the start)."""

    always_on = ("journal_unflushed_lost",)


class DumpWriteFailureRaft(storage_rules(("dump_write_fails",))):
    """Only failing dump writes (own snapshots and ones received from the leader)."""


# Marked storage: they run only with --raft-storage.
raft_machine_tests(StorageFaultRaft, marks=[pytest.mark.storage])
raft_machine_tests(PowerLossRaft, marks=[pytest.mark.storage])
# Two fifths of the profile (10 examples with the default one): about a second and a half.
raft_machine_tests(DumpWriteFailureRaft, share=0.4)
