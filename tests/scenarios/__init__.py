"""Scenario catalogue: readable, deterministic cluster stories in the ``Cluster`` vocabulary.

Ported in spirit from TiKV's raftstore tests, the Raft paper tests of raft-rs
and pysyncobj's own test suite; grouped by category (cluster scenarios,
consistency, chaos, durability, learners, snapshots, Raft paper, pysyncobj
ports).  Shared helpers live in :mod:`scenarios._support`.
"""
