"""``python -m harness``: the ``raft-harness`` command line (see :mod:`harness.cli`)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
