"""Fixes for real pysyncobj bugs the harness found (FINDINGS.md), installable for a campaign.

A long fuzzing campaign keeps rediscovering the bug it finds most easily.
With the fixes in (``pytest properties/ --known-fixes``, ``raft-harness fuzz
--known-fixes``) it hunts for the next one.  Each entry of :data:`KNOWN_FIXES`
is a minimal correction of one finding, as a
:class:`~harness.adapter.patching.Mutation` of ``pysyncobj.syncobj.SyncObj``
with a probe that passes only while the fix is in.  Each is tied to a finding
whose regression test still runs against unmodified pysyncobj, so nothing is
hidden: the fixes change what a campaign looks for, not what the test suite
reports.  Bugs we inject on purpose are in :mod:`harness.adapter.injected_bugs`,
never here.

A fix applies exactly to the releases that have its bug: where a release has
no such code (the bug was fixed there, or never existed), its snippet is
absent and :func:`~harness.adapter.patching.inject` raises
``MutationNotApplicable``.  The ledger (:mod:`harness.ledger.bugs`) names each
bug's fix, its releases and its regression tests, and ``tests/test_ledger.py``
checks that the two agree on every release.  The fixes live in one module per concern
(:mod:`~harness.adapter.fixes_replication`, :mod:`~harness.adapter.fixes_restart`,
:mod:`~harness.adapter.fixes_requests`, :mod:`~harness.adapter.fixes_election`).  No fix
replaces the lines another one patches, so the fixes of a release install together
(``tests/test_ledger.py`` installs them in ledger order and reversed, on every release).
"""
from __future__ import annotations

from typing import Dict

from harness.adapter import fixes_election, fixes_replication, fixes_requests, fixes_restart
from harness.adapter.patching import Mutation

__all__ = ["KNOWN_FIXES"]

#: Fixes for findings the harness made, by name (never an injected bug's name).
KNOWN_FIXES: Dict[str, Mutation] = {
    m.name: m for m in fixes_replication.FIXES + fixes_restart.FIXES + fixes_requests.FIXES + fixes_election.FIXES
}
