"""``Bank``: ledgers of account balances, replicated by pysyncobj's Raft log.

Each ledger (a name such as ``"main"``) is an independent set of accounts.  Deposits add money; a transfer
moves money between two accounts of one ledger and is refused when the source cannot cover it.  Every
change is a ``@replicated`` method, so every replica applies the same changes in the same order.  Money
is conserved on every replica: the balances of a ledger always add up to what was deposited into it,
and no balance is ever negative (:meth:`Bank.audit`).
"""
from __future__ import annotations

from typing import Dict, Tuple

from pysyncobj import SyncObj, replicated


class Bank(SyncObj):
    """``Bank(self_node, other_nodes, conf)`` like any SyncObj (``self_node``: this node's address)."""

    def __init__(self, self_node, other_nodes, conf=None, **kwargs) -> None:
        super().__init__(self_node, other_nodes, conf, **kwargs)
        # Set after SyncObj.__init__, so pysyncobj's snapshots (full dumps) include them.
        self._balances: Dict[str, Dict[str, int]] = {}
        self._deposited: Dict[str, int] = {}

    @replicated
    def deposit(self, ledger: str, account: str, amount: int) -> int:
        """Add ``amount`` to ``account``; returns its new balance."""
        accounts = self._balances.setdefault(ledger, {})
        accounts[account] = accounts.get(account, 0) + amount
        self._deposited[ledger] = self._deposited.get(ledger, 0) + amount
        return accounts[account]

    @replicated
    def transfer(self, ledger: str, source: str, target: str, amount: int) -> bool:
        """Move ``amount`` from ``source`` to ``target``; False (and nothing moves) if ``source`` has less."""
        accounts = self._balances.setdefault(ledger, {})
        if accounts.get(source, 0) < amount:
            return False
        accounts[source] -= amount
        accounts[target] = accounts.get(target, 0) + amount
        return True

    @replicated
    def statement(self, ledger: str) -> Tuple[Tuple[str, int], ...]:
        """Every account of ``ledger`` with its balance, sorted by account (a read through the log)."""
        return tuple(sorted(self._balances.get(ledger, {}).items()))

    def audit(self, ledger: str) -> Tuple[int, int, int]:
        """This replica's (sum of balances, money deposited, lowest balance) of ``ledger``: no Raft round."""
        balances = self._balances.get(ledger, {})
        return sum(balances.values()), self._deposited.get(ledger, 0), min(balances.values(), default=0)
