"""``python -m harness``: the ``raft-harness`` command line (see :mod:`harness.cli.command`)."""
from harness.cli.command import main

if __name__ == "__main__":
    raise SystemExit(main())
