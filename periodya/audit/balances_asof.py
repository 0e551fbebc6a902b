"""Balances as of any position or moment, computed from the log itself.

Computed directly from the LedgerGroupPosted events of the (tx, seq) prefix (audit.points), in one SQL
aggregate, rather than by rebuilding the balances projection in a scratch schema: it needs no writes
(it runs on a read-only connection or replica and holds no xid, so followers are never held back), it
is one pass over the log, and it is an independent second computation next to the projection code, so
an audit does not merely repeat what the live path did. It yields the projection's exact row shape,
including `last_seq` and `updated_at` (the last entry's event in (tx, seq) order) and `protected`.

Why the answer is one the live system really showed (DESIGN.md, "Lock before you write"): every
command locks its accounts before its first write, so the transactions touching one account get their
ids in commit order; the prefix up to event P therefore holds, for each account P touches, exactly the
entries committed before P's transaction committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from periodya.audit.points import Point, above_horizon, resolve
from periodya.domain.accounts import is_protected
from periodya.eventstore.model import Position
from periodya.eventstore.timeline import rfc3339

_AS_OF = """
SELECT x.account, x.currency, sum(x.credit) - sum(x.debit) AS balance, sum(x.debit) AS debits,
       sum(x.credit) AS credits,
       (array_agg(e.seq ORDER BY e.tx DESC, e.seq DESC))[1] AS last_seq,
       (array_agg(e.recorded_at ORDER BY e.tx DESC, e.seq DESC))[1] AS updated_at
  FROM periodya.events e
 CROSS JOIN LATERAL jsonb_to_recordset(e.data -> 'entries') AS x(account text, currency text, debit bigint,
                                                                 credit bigint)
 WHERE e.event_type = 'LedgerGroupPosted' AND (e.tx, e.seq) <= ($1::text::xid8, $2::bigint)
   AND ($3::text[] IS NULL OR x.account = ANY($3::text[]))
 GROUP BY x.account, x.currency
 ORDER BY x.account, x.currency"""


@dataclass(frozen=True)
class BalanceRow:
    account: str
    currency: str
    balance: int
    debits: int
    credits: int
    protected: bool
    last_seq: int
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {"account": self.account, "currency": self.currency, "balance": self.balance,
                "debits": self.debits, "credits": self.credits, "protected": self.protected,
                "lastSeq": self.last_seq, "updatedAt": rfc3339(self.updated_at)}


@dataclass(frozen=True)
class BalancesAsOf:
    position: Position
    unsettled: bool  # a transaction in flight may still commit inside the prefix
    rows: list[BalanceRow]


async def balances_at(conn: asyncpg.Connection, position: Position,
                      accounts: Sequence[str] | None = None) -> list[BalanceRow]:
    """Every (account, currency) touched up to `position`, as the balances projection shows it."""
    rows = await conn.fetch(_AS_OF, str(position.tx), position.seq, list(accounts) if accounts else None)
    return [BalanceRow(r["account"], r["currency"], int(r["balance"]), int(r["debits"]), int(r["credits"]),
                       is_protected(r["account"]), r["last_seq"], r["updated_at"]) for r in rows]


async def balances_as_of(pool: asyncpg.Pool, point: Point, accounts: Sequence[str] | None = None) -> BalancesAsOf:
    """Resolve `point` and compute the balances, all in one read-only REPEATABLE READ snapshot."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL statement_timeout = 0")
        position = await resolve(conn, point)
        return BalancesAsOf(position, await above_horizon(conn, position), await balances_at(conn, position, accounts))
