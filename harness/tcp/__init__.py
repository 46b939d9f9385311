"""The TCP backend: the harness' cluster API over pysyncobj's real TCP transport, on loopback, in wall time.

The simulated :class:`harness.Cluster` replaces pysyncobj's clock and network,
which is what makes runs replayable, and also what keeps pysyncobj's own
transport code (sockets, connects, reconnects, timeouts) out of every check.
This package runs that code: :class:`TcpCluster` keeps the same contract
(:class:`harness.contract.ClusterLike`) and the same filter chains, so the
checkers, reports and scenarios written for the simulation run over real
sockets too.

Modules, by concern: :mod:`~harness.tcp.transport` (pysyncobj's TCP transport
with the filter chains hooked in), :mod:`~harness.tcp.network` (the chains,
message delays and counters), :mod:`~harness.tcp.runner` (the harness thread
that ticks every node, and clean-up), :mod:`~harness.tcp.cluster` (the
``TcpCluster`` API).
"""
from harness.tcp.cluster import TcpCluster

__all__ = ["TcpCluster"]
