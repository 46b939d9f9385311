"""The bank under every fault raft-harness knows, Raft safety and linearizability checked throughout.

``BankMachine`` is raft-harness' :class:`~harness.fuzz.machine.RaftMachine` pointed at the bank: its
node class and sequential model, a client operation for the background traffic and the liveness probe,
rules for the bank's own operations, and one invariant of the service itself (money is conserved on
every replica).  The fault rules (partitions, message loss and delay, crashes, restarts, snapshots,
membership changes) and the Raft invariants come with RaftMachine.  ``raft_machine_tests`` turns the
machine into one test case per pytest-xdist worker.
"""
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from harness.fuzz.machine import RaftMachine, targets
from harness.fuzz.shards import raft_machine_tests
from replicated_bank import Bank, LedgerModel

LEDGERS = ("main", "savings")
ACCOUNTS = ("alice", "bob", "carol")

ledgers = st.sampled_from(LEDGERS)
accounts = st.sampled_from(ACCOUNTS)


class BankMachine(RaftMachine):
    network = "fifo"  # pysyncobj's contract: TCP links
    node_class = Bank
    model = LedgerModel()
    write = read = None  # RaftMachine's key-value rules; the bank has its own operations

    def background_operation(self, leader: str) -> None:
        self.cluster.call("deposit", "main", "alice", 1, via=leader)

    def liveness_probe(self, timeout: float) -> None:
        self.cluster.must_call("deposit", "main", "bob", 1, timeout=timeout)

    @rule(ledger=ledgers, account=accounts, amount=st.sampled_from((1, 10)), via=targets)
    def deposit(self, ledger: str, account: str, amount: int, via: str) -> None:
        node = self._via(via)
        if node is not None:
            self.cluster.call("deposit", ledger, account, amount, via=node)
        self._settle()

    # (``target`` is a keyword of @rule itself: the receiving account is ``payee``.)
    @rule(ledger=ledgers, payer=accounts, payee=accounts, amount=st.sampled_from((1, 5, 20)), via=targets)
    def transfer(self, ledger: str, payer: str, payee: str, amount: int, via: str) -> None:
        node = self._via(via)
        if node is not None:
            self.cluster.call("transfer", ledger, payer, payee, amount, via=node)
        self._settle()

    @rule(ledger=ledgers, via=targets)
    def statement(self, ledger: str, via: str) -> None:
        node = self._via(via)
        if node is not None:
            self.cluster.call("statement", ledger, via=node)
        self._settle()

    @invariant()
    def money_is_conserved(self) -> None:
        """On every replica that is up, each ledger's balances add up to its deposits, none negative."""
        if self.cluster is None:
            return
        for node in self.cluster.up_ids():
            for ledger in LEDGERS:
                total, deposited, lowest = self.cluster.node(node).audit(ledger)
                assert total == deposited and lowest >= 0, \
                    f"{node}: ledger {ledger!r} holds {total} of {deposited} deposited, lowest balance {lowest}"


raft_machine_tests(BankMachine)
