"""Where the replication worker hands committed transactions.

Contract: ``deliver(txn)`` returns only once every event of ``txn`` is durably accepted downstream
(broker and history). The worker confirms ``txn.end_lsn`` to Postgres only after ``deliver``
returned, so an exception (or a crash) means the transaction is streamed again: at-least-once.
Transactions arrive in commit order, one at a time.
"""

from __future__ import annotations

from typing import Protocol

from cdc.events import Transaction


class ChangeSink(Protocol):
    async def deliver(self, txn: Transaction) -> None: ...


class NullSink:
    """Accepts everything; counts what it saw (benchmarks)."""

    def __init__(self) -> None:
        self.transactions = 0
        self.events = 0

    async def deliver(self, txn: Transaction) -> None:
        self.transactions += 1
        self.events += len(txn.events)
