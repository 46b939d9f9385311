"""``LedgerModel``: what one ledger of :class:`~replicated_bank.service.Bank` does, one operation at a time.

raft-harness checks a cluster's client history for linearizability against a sequential model of one key
(here: one ledger): could the results clients saw have come from some order of the operations that
respects real time?  The model is the ledger run on a single machine.
"""
from __future__ import annotations

from typing import Tuple

from harness.check.linearizability import Model
from harness.history import OK, Operation

State = Tuple[Tuple[str, int], ...]  # (account, balance) pairs, sorted: hashable, as the search needs


class LedgerModel(Model):
    def initial(self) -> State:
        return ()

    def step(self, state: State, op: Operation) -> Tuple[bool, State]:
        """Apply ``op`` (its ``value`` is the arguments after the ledger name) and say whether the result
        its client saw is possible here; an operation without an ``ok`` outcome is always possible."""
        balances = dict(state)
        if op.kind == "deposit":
            account, amount = op.value
            balances[account] = balances.get(account, 0) + amount
            result = balances[account]
        elif op.kind == "transfer":
            source, target, amount = op.value
            result = balances.get(source, 0) >= amount
            if result:
                balances[source] -= amount
                balances[target] = balances.get(target, 0) + amount
        elif op.kind == "statement":
            result = state
        else:
            raise ValueError(f"LedgerModel: unknown operation {op.kind!r}")
        return op.outcome != OK or op.result == result, tuple(sorted(balances.items()))
