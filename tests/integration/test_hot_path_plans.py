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
    "mark provider events applied (provider_events projection)":
        (provider_events.MARK_APPLIED, ["text[]", "bigint[]", "text[]"], "provider_events"),
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


async def test_probes_answer_as_any_would(pool: asyncpg.Pool) -> None:
    """Each row once, whatever the keys: a key listed twice gives one row, a missing key none (as with
    `key = ANY($1)`, which a batch that listed an id twice must not see twice)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO escrows VALUES ('e1', 'USD', 5, 0, 0, 1, now(), now()), "
                           "('e2', 'USD', 7, 0, 0, 1, now(), now())")
        got = await rows.fetch_by_keys(conn, "escrows", "escrow_id", ["e2", "e1", "e2", "missing"])
        assert sorted(r["escrow_id"] for r in got) == ["e1", "e2"]
        assert {r["escrow_id"]: r["funded"] for r in got} == {"e1": 5, "e2": 7}

        await conn.execute("INSERT INTO provider_events (event_id, type, payout_id, received_seq, received_at) VALUES "
                           "('evt_1', 'payout.paid', 'po1', 2, now()), ('evt_2', 'payout.paid', 'po1', 1, now())")
        held = await conn.fetch(webhooks.SELECT_HELD, ["evt_1", "evt_2", "evt_1", "evt_missing"])
        assert [(r["event_id"], r["pid"]) for r in held] == [("evt_2", "po1"), ("evt_1", "po1")]  # arrival order

        await conn.execute("INSERT INTO idempotency_keys (scope, key, request_hash, status, response) "
                           "VALUES ('s', 'k1', 'h', 201, '{}')")
        await conn.execute("INSERT INTO balances VALUES ('payable:a', 'USD', 10, 0, 10, true, 1, now())")
        stored = await conn.fetch(payout_batch.READ_STORED, "s", ["k1", "k1", "k2"],
                                  ["payable:a", "payable:a", "payable:b"], ["USD", "USD", "USD"])
        assert sorted((r["key"], r["account"], r["balance"]) for r in stored if r["key"] is not None) == [
            ("k1", None, None)]
        assert [(r["account"], r["balance"]) for r in stored if r["key"] is None] == [("payable:a", 10)]
