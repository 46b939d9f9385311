"""Small state machines for the command-line tests (not collected by ``pytest tests/``: no ``test_`` prefix).

``raft-harness fuzz --properties tests/cli_machines.py::TestInjectedBug`` runs
one of them instead of ``properties/``.  All drive real pysyncobj nodes:

* ``InjectedBugRaft`` reports a violation as soon as any node commits index
  ``bug_index`` (an injected "bug" every example hits within a few steps, so a
  campaign finds, shrinks and reports it in seconds).
* ``PatchedOnlyBugRaft`` has that bug only while a ``harness.adapter.patching``
  patch is installed (for replays of patched recordings).
* ``QuietRaft`` has client operations and waits only: nothing to find, for
  budget and statistics tests.
* ``FlakyRaft`` is deliberately nondeterministic (every other ``wait``, counted
  across runs, lasts half a second longer): ``replay`` must catch it.
"""
from __future__ import annotations

import itertools

from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from harness.check.invariants import SafetyViolation, Violation
from harness.adapter.patching import installed
from harness.report.text import describe
from harness.fuzz.machine import RaftMachine


class InjectedBugRaft(RaftMachine):
    """RaftMachine with an injected bug: committing index ``bug_index`` anywhere is a violation."""

    network = "fifo"
    bug_index = 3

    @invariant()
    def injected_bug(self) -> None:
        if self.cluster is None or self.failed:
            return
        for node_id in self.cluster.node_ids:
            s = self.cluster.state(node_id)
            if s.up and s.commit_index >= self.bug_index:
                entry = next((e for e in s.tail if e.index == self.bug_index), None)
                self._fail(SafetyViolation(
                    [Violation("injected_bug", f"{node_id} committed index {self.bug_index} (the injected bug)",
                               nodes=(node_id,), indexes=(self.bug_index,),
                               terms=(entry.term,) if entry is not None else ())],
                    describe(self.cluster)))


class PatchedOnlyBugRaft(InjectedBugRaft):
    """The injected bug exists only while a harness.adapter.patching patch is installed: a replay that
    forgets a recording's patches no longer fails."""

    @invariant()
    def injected_bug(self) -> None:
        if installed():
            super().injected_bug()


class InjectedBugTooRaft(InjectedBugRaft):
    """The same injected bug, a second test (``--keep-going`` must report both)."""

    bug_index = 4


class QuietRaft(RaftMachine):
    """Client traffic and waiting only: a cluster nothing happens to."""

    network = "fifo"
    partition = partition_with_bridge = isolate = heal = None
    drop_messages = delay_messages = block_message_type = hold_messages = release_held = None
    crash = restart = snapshot = add_node = remove_node = add_readonly_node = None


_JITTER = itertools.count()


class FlakyRaft(QuietRaft):
    """Nondeterministic on purpose: the virtual length of ``wait`` depends on how often it ran before."""

    @rule(seconds=st.sampled_from((0.5, 2.0)))
    def wait(self, seconds: float) -> None:
        self.cluster.run_for(seconds + 0.5 * (next(_JITTER) % 2))  # every other call half a second longer


TestInjectedBug = InjectedBugRaft.TestCase
TestInjectedBugToo = InjectedBugTooRaft.TestCase
TestQuiet = QuietRaft.TestCase
