"""The hot path's lookups are index scans in the plan PostgreSQL keeps, even on a new, never-analyzed database.

asyncpg prepares every statement, and after a few executions PostgreSQL keeps a generic plan for it until
the table's statistics change (autovacuum's first ANALYZE: a minute or more after the table grew). A generic
plan made while a new database's tables were small is a sequential scan for `key = ANY($1)` or a join to
unnest($1); kept while the table grows, it turned every batch of the payout pipeline into a scan of the
whole table (PostgreSQL's CPU per payout fell by 40% when these lookups became key probes: bench pipeline).
Each case here is planned generic on the test database's empty tables, the worst case, and must not scan
its table sequentially.
"""

from __future__ import annotations

import asyncpg
import pytest

from periodya.eventstore import store
from periodya.handlers import payout_batch
from periodya.http import webhook_routes
from periodya.projections import provider_events, rows
from periodya.runners import outbox, webhooks

CASES = {
    "payouts by id (payout projection)": (rows.by_keys_sql("payouts", "payout_id"), ["text[]"], "payouts"),
    "outbox by payout id (outbox projection)": (rows.by_keys_sql("outbox", "payout_id"), ["text[]"], "outbox"),
    "escrows by id (escrow projection)": (rows.by_keys_sql("escrows", "escrow_id"), ["text[]"], "escrows"),
    "stored answers and balances (payout request batch)":
        (payout_batch.READ_STORED, ["text", "text[]", "text[]", "text[]"], "idempotency_keys|balances"),
    "held provider events (webhooks run)": (webhooks.SELECT_HELD, ["text[]"], "provider_events|payouts"),
    "earlier unapplied provider events (webhooks run)": (webhooks.SELECT_UNAPPLIED, ["text[]"], "provider_events"),
    "mark a provider event applied (provider_events projection)":
        (provider_events.MARK_APPLIED, ["text", "bigint", "text"], "provider_events"),
    "pending provider events (webhooks run)": (webhooks.PENDING, ["bigint"], "provider_events"),
    "due outbox tasks (outbox run)": (outbox.DUE, ["timestamptz", "bigint"], "outbox"),
    "webhook ids already stored (webhook intake)": (webhook_routes.EXISTING, ["text[]"], "events"),
    "streams' events (lifecycle load)": (store.READ_STREAMS, ["text[]"], "events"),
}


async def generic_plan(conn: asyncpg.Connection, sql: str, types: list[str]) -> str:
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE hot ({', '.join(types)}) AS {sql}")
        try:
            nulls = ", ".join("NULL" for _ in types)
            return "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN EXECUTE hot ({nulls})"))
        finally:
            await conn.execute("DEALLOCATE hot")


@pytest.mark.parametrize("case", CASES)
async def test_generic_plan_scans_no_table_sequentially(pool: asyncpg.Pool, case: str) -> None:
    sql, types, tables = CASES[case]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM pg_stat_user_tables WHERE relname = ANY($1) "
                                   "AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
                                   tables.split("|")) == 0, "the tables must be the never-analyzed worst case"
        plan = await generic_plan(conn, sql, types)
    for table in tables.split("|"):
        assert f"Seq Scan on {table}" not in plan, plan
