"""The harness' Hypothesis profiles, registered by the library so any project (and the CLI) sees the same.

``raft-dev``     the default: a quick look, failures saved to the example database, no Hypothesis shrinking.
``raft-ci``      bounded and reproducible: derandomized, no database, no Hypothesis shrinking (``.ci/run``).
``raft-fuzz``    long campaigns (``raft-harness fuzz``).
``raft-bench``   like ``raft-ci`` but big enough to time, and no shrinking (``bench/``).
``raft-replay``  only re-runs examples saved in the database.

The unprefixed names this repository used first (``dev``, ``ci``, ``fuzz``, ``bench``, ``replay``) are
registered too, as aliases kept for one release.  ``RAFT_HARNESS_DB`` picks the example database: a
directory (default ``.hypothesis/examples``) or ``redis://host:port/db`` shared by many machines.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from harness.environment import DATABASE_ENV

PREFIX = "raft-"
NAMES = ("dev", "ci", "fuzz", "bench", "replay")
#: Old spelling -> profile name, for one release.
ALIASES: Dict[str, str] = {name: PREFIX + name for name in NAMES}


def example_database(where: Optional[str] = None) -> ExampleDatabase:
    """The database ``RAFT_HARNESS_DB`` (or ``where``) names; a directory unless it is a redis:// URL."""
    where = where or os.environ.get(DATABASE_ENV) or os.path.join(".hypothesis", "examples")
    if where.startswith("redis://"):
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase

        return RedisExampleDatabase(redis.Redis.from_url(where), key_prefix=b"raft-harness:")
    return DirectoryBasedExampleDatabase(where)


# No explain phase: on a state machine it re-runs the failing example hundreds of times
# (minutes per failure) to list covered lines; the report already says what broke and where.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
# raft-dev and raft-ci stop at the first failure and leave it whole to the plugin, which triages the
# failure as it happened and then minimises it keeping that verdict, both within their --raft-*-seconds
# bounds.  Hypothesis' shrinker is bounded only by its own 300 s and, on these machines, spends most of
# them re-running examples that pass: it made a known bug cost a CI shard 100-300 s instead of 20-40.
# The long campaigns (raft-fuzz) keep it: there a failure is rare and its shrunk form goes to the database.
_BOUNDED_PHASES = [phase for phase in _PHASES if phase is not Phase.shrink]


def register() -> None:
    """Register every profile (idempotent: the last registration of a name wins, with the same values)."""
    common = dict(deadline=None, print_blob=True, database=example_database(), phases=_PHASES,
                  suppress_health_check=list(HealthCheck))
    values = {
        "dev": dict(max_examples=25, stateful_step_count=30, **{**common, "phases": _BOUNDED_PHASES}),
        "ci": dict(max_examples=60, stateful_step_count=40, derandomize=True,
                   **{**common, "database": None, "phases": _BOUNDED_PHASES}),
        "bench": dict(max_examples=300, stateful_step_count=40, derandomize=True,
                      **{**common, "database": None, "phases": [Phase.generate]}),
        "fuzz": dict(max_examples=20_000, stateful_step_count=80, **common),
        "replay": dict(max_examples=1, **{**common, "phases": [Phase.explicit, Phase.reuse]}),
    }
    for name, kwargs in values.items():
        settings.register_profile(PREFIX + name, **kwargs)
        settings.register_profile(name, **kwargs)


def known(name: str) -> bool:
    """Whether a profile of that name is registered (by the harness or by the user's own conftest)."""
    try:
        settings.get_profile(name)
    except Exception:
        return False
    return True


def deterministic(name: str) -> bool:
    """Whether profile ``name`` runs the same examples every time (a second round would repeat the first)."""
    try:
        profile = settings.get_profile(name)
    except Exception:
        return False
    return bool(profile.derandomize) or Phase.generate not in profile.phases


def default_profile() -> str:
    """``raft-ci`` under CI (the ``CI`` variable, as Hypothesis itself reads it), else ``raft-dev``."""
    return PREFIX + ("ci" if os.environ.get("CI") else "dev")
