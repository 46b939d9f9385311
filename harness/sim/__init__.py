"""The simulated world: the cluster, virtual time, the event queue, the network and storage failpoints.

:class:`SimNode` is re-exported here because it is part of what nodes write: pysyncobj pickles its
membership (a set of node objects) into every snapshot, so the class's import path is in the bytes a
snapshot transfer puts on the wire.  Pinning it to this package keeps snapshots and trace digests
unchanged when the modules inside move.
"""
from harness.sim.network import SimNode

SimNode.__module__ = "harness.sim"

__all__ = ["SimNode"]
