"""What the harness knows about pysyncobj's bugs, and how it tells a failure's bug apart.

:mod:`harness.ledger.bugs` is the registry (ids, releases, fixes, regression tests);
:mod:`harness.ledger.triage` replays a counterexample once per applicable fix and labels it
``known: finding N``, ``known: findings N+M`` or ``NEW``.
"""
from harness.ledger.bugs import LEDGER, Bug, applicable

__all__ = ["Bug", "LEDGER", "applicable"]
