"""The only package that reads or patches pysyncobj's internals.

pysyncobj keeps its Raft state in name-mangled attributes (``_SyncObj__raftLog``,
``_SyncObj__votedForNodeId``, ...), takes its clock, randomness and file
functions from module globals, and has no hooks for any of that.  The harness
needs all of it: to observe a node's log and vote, to run nodes in virtual
time, to inject disk faults, to seed Raft bugs into pysyncobj's source and to
install fixes for the bugs it found.  None of this is public API, and the
releases the harness supports (0.3.11 to 0.3.17) differ in it: 0.3.11 has
other source for several patched methods and no persisted term or vote,
``FAIL_REASON.UNKNOWN_OUTCOME`` exists from 0.3.15, ...  Keeping every such
access in this one package means a new pysyncobj release is adapted to here
and nowhere else (``tests/test_layout.py`` checks that the rest of the
harness stays out).

* :mod:`~harness.adapter.observe`: read a running node's state (a
  :class:`~harness.state.NodeState`), wrap its journal, close its files, hook
  its journal writes.
* :mod:`~harness.adapter.timing`: pysyncobj's clock, ``random`` and gzip
  timestamps (for :mod:`harness.sim.clock`).
* :mod:`~harness.adapter.files`: the ``open``/``atomicReplace`` pysyncobj writes
  its files with (for :mod:`harness.sim.storage`).
* :mod:`~harness.adapter.patching`: the engine that patches ``SyncObj``'s
  source for a ``with`` block (``inject``).
* :mod:`~harness.adapter.probes`: a lone node driven by hand, to check that
  a patch changes behaviour.
* :mod:`~harness.adapter.injected_bugs`: Raft bugs we inject to show that the
  checker catches them (``INJECTED_BUGS``).
* :mod:`~harness.adapter.fixes`: fixes for real pysyncobj bugs the harness
  found (``KNOWN_FIXES``), kept by concern in ``fixes_replication``,
  ``fixes_restart``, ``fixes_requests`` and ``fixes_election``.
"""
