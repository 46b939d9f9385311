"""The ``raft-harness`` command line: ``fuzz`` campaigns, ``replay`` of counterexamples, ``report`` pages."""
from harness.cli.command import console_main, main

__all__ = ["console_main", "main"]
