"""The money invariants' SQL (projections.invariants), as the swap's check runs it on a scratch schema:
each invariant finds its own violation, and whole tables pass."""

from __future__ import annotations

import asyncpg

from periodya.audit import scratch
from periodya.projections import invariants

TABLES = ["ledger_entries", "balances"]


async def test_each_invariant_finds_its_violation_and_whole_tables_pass(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await scratch.create(conn, "invariants_check")
            await conn.execute("ALTER TABLE invariants_check.balances DROP CONSTRAINT no_overdraft")
            entries = [("g1", 1, "cash", "USD", 100, 0), ("g1", 2, "payee", "USD", 0, 100)]
            await conn.executemany("INSERT INTO invariants_check.ledger_entries VALUES ($1, $2, $3, $4, $5, $6)",
                                   entries)
            await conn.execute("INSERT INTO invariants_check.balances VALUES ('cash', 'USD', -100, 100, 0, false, 1, "
                               "now()), ('payee', 'USD', 100, 0, 100, true, 1, now())")
            assert await invariants.problems(conn, "invariants_check", TABLES) == []

            await conn.execute("INSERT INTO invariants_check.ledger_entries VALUES ('g2', 1, 'cash', 'EUR', 5, 0)")
            await conn.execute("INSERT INTO invariants_check.balances VALUES ('fees', 'USD', -7, 7, 0, true, 2, now())")
            found = await invariants.problems(conn, "invariants_check", TABLES)
        finally:
            await tx.rollback()
    assert found == ["ledger group g2 does not balance in EUR",
                     "balances in USD sum to -7, not 0",
                     "protected account fees is negative in USD",
                     "balance of fees USD differs from its entries"]


async def test_only_the_invariants_of_the_tables_given_are_checked(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await scratch.create(conn, "invariants_check")
            await conn.execute("INSERT INTO invariants_check.ledger_entries VALUES ('g2', 1, 'cash', 'EUR', 5, 0)")
            only_balances = await invariants.problems(conn, "invariants_check", ["balances"])
            only_ledger = await invariants.problems(conn, "invariants_check", ["ledger_entries"])
        finally:
            await tx.rollback()
    assert only_balances == []
    assert only_ledger == ["ledger group g2 does not balance in EUR"]
