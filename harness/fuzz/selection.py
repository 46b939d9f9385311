"""Which tests a ``--known-fixes`` run patches: one rule for ``conftest.py`` and ``raft-harness fuzz``.

The fixes (:mod:`harness.adapter.fixes`) are for fuzzing campaigns over the
state machines in ``properties/``.  The harness' own tests never get them:
its finding tests must keep failing on the unmodified pysyncobj releases.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["known_fixes_apply_to"]


def known_fixes_apply_to(path: Path, root: Path) -> bool:
    """Whether ``--known-fixes`` patches the tests at ``path`` (a file or directory): only those in a
    ``properties/`` directory (looked for below ``root`` when ``path`` is inside it), never the
    harness' own tests, whose finding tests must keep failing on the unmodified releases."""
    try:
        path = path.relative_to(root)
    except ValueError:
        pass
    return "properties" in path.parts
