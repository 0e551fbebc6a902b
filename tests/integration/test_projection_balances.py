"""The balances upsert: the protected flag and the no_overdraft backstop, for new and existing rows."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count

import asyncpg
import pytest

from periodya.eventstore.model import RecordedEvent
from periodya.projections import balances

_SEQ = count(1)


def posted(*entries: tuple[str, int, int]) -> RecordedEvent:
    """A LedgerGroupPosted event with (account, debit, credit) entries in USD, not necessarily balanced:
    the projection alone is under test."""
    seq = next(_SEQ)
    data = {"groupId": f"g{seq}", "kind": "test", "subject": "test",
            "entries": [{"account": a, "currency": "USD", "debit": d, "credit": c} for a, d, c in entries]}
    return RecordedEvent(seq, seq, f"ledger-g{seq}", 1, "LedgerGroupPosted", data, {}, datetime.now(UTC))


async def rows(conn: asyncpg.Connection) -> dict[str, tuple[int, bool]]:
    return {r["account"]: (r["balance"], r["protected"])
            for r in await conn.fetch("SELECT account, balance, protected FROM balances")}


async def test_flags_and_balances_of_new_and_existing_accounts(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await balances.apply(conn, [posted(("cash:platform", 500, 0), ("payable:a", 0, 500))])
        assert await rows(conn) == {"cash:platform": (-500, False), "payable:a": (500, True)}
        # existing protected account, negative batch within its balance; a new protected one at zero
        await balances.apply(conn, [posted(("payable:a", 300, 0), ("inflight:a", 0, 300)),
                                    posted(("payable:b", 0, 0))])
        assert await rows(conn) == {"cash:platform": (-500, False), "payable:a": (200, True),
                                    "inflight:a": (300, True), "payable:b": (0, True)}
        # existing protected account, positive batch: stays protected; unprotected goes further negative
        await balances.apply(conn, [posted(("cash:platform", 100, 0), ("payable:a", 0, 100))])
        assert await rows(conn) == {"cash:platform": (-600, False), "payable:a": (300, True),
                                    "inflight:a": (300, True), "payable:b": (0, True)}


@pytest.mark.parametrize("entries", [
    [("payable:new", 1, 0)],  # a new protected account whose first batch is negative
    [("payable:a", 501, 0)],  # an existing protected account taken below zero
])
async def test_no_overdraft_is_enforced_on_new_and_existing_rows(pool: asyncpg.Pool,
                                                                 entries: list[tuple[str, int, int]]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await balances.apply(conn, [posted(("cash:platform", 500, 0), ("payable:a", 0, 500))])
        with pytest.raises(asyncpg.CheckViolationError, match="no_overdraft"):
            async with conn.transaction():
                await balances.apply(conn, [posted(*entries)])
        assert await rows(conn) == {"cash:platform": (-500, False), "payable:a": (500, True)}
