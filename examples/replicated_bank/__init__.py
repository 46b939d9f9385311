"""A replicated bank: ledgers of account balances on pysyncobj, and the sequential model they must follow.

The example project for raft-harness (``examples/`` of the harness' repository): a service a team would
write on pysyncobj, tested with the harness' pytest plugin (``tests/``).
"""
from replicated_bank.model import LedgerModel
from replicated_bank.service import Bank

__all__ = ["Bank", "LedgerModel"]
