"""Every environment variable the harness reads, named once.

A campaign (``raft-harness fuzz``) talks to its pytest workers through the environment; a user picks the
example database and the node directory the same way.  Each name is a constant here so that a writer
and its readers cannot drift apart.
"""
from __future__ import annotations

#: The Hypothesis example database: a directory, or ``redis://host:port/db`` shared by many machines.
DATABASE_ENV = "RAFT_HARNESS_DB"
#: Where simulated clusters put their node directories (the campaign's scratch dir, removed at its end).
NODE_DIR_ENV = "RAFT_HARNESS_TMP"
#: A failing run writes ``counterexample.json`` into this directory.
REPORT_ENV = "RAFT_HARNESS_REPORT"
#: A campaign's report directory; each failing test gets a directory below it.
REPORT_BASE_ENV = "RAFT_HARNESS_REPORT_BASE"
#: The campaign seed ``raft-harness fuzz --seed`` hands to workers (each test derives its own from it).
CAMPAIGN_SEED_ENV = "RAFT_HARNESS_SEED"
#: Per-example statistics are appended as JSON lines below this directory.
STATS_ENV = "RAFT_HARNESS_STATS"
#: Cluster sizes the machines draw: ``"3-5"`` or ``"4"``.
NODES_ENV = "RAFT_HARNESS_NODES"
#: Set (any value) to run the real-socket soak tests; and how many examples each (properties/test_tcp_soak.py).
SOAK_ENV = "RAFT_HARNESS_SOAK"
SOAK_EXAMPLES_ENV = "RAFT_HARNESS_SOAK_EXAMPLES"
#: Benchmark campaigns (bench/properties/): injected bugs to install (comma-separated names), and ``0`` to
#: judge step-end samples only instead of the event stream.
INJECT_ENV = "RAFT_HARNESS_INJECT"
STREAM_CHECKS_ENV = "RAFT_HARNESS_STREAM_CHECKS"
#: Benchmark campaigns: the guidance measures to target (harness.fuzz.guidance: comma-separated names, ``all``
#: or ``none``); unset: the machine's default.
TARGETS_ENV = "RAFT_HARNESS_TARGETS"
#: Benchmark campaigns: the machine they fuzz with, ``raft`` (RaftMachine, the default) or ``nemesis``
#: (NemesisRules: per-link faults, pauses, skew, transfers, client variety).
CAMPAIGN_MACHINE_ENV = "RAFT_HARNESS_CAMPAIGN_MACHINE"
