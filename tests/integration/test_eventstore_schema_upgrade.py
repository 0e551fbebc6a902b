"""schema.sql over a database made by the previous one: `periodya migrate` upgrades it in place.

tests/integration/schema_e478545.sql is `git show e478545:schema.sql`, byte for byte: the schema before
the status CHECKs, genesis_hash() and the removal of append_batch. A database is made with it (and
written to by real commands), then migrated with today's schema.sql: the old rows and chains stay
valid, commands go on, replay equals live, and a status outside the lifecycle is refused.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from periodya import db
from periodya.eventstore import EventStore
from periodya.eventstore.verify import chain_breaks_in_db, verify_chains
from periodya.handlers import alerts as alert_commands
from periodya.handlers.unit_of_work import Meta, UnitOfWork, run_command
from tests.conftest import with_database
from tests.integration.invariants import assert_money_invariants
from tests.integration.test_audit_replay import PROGRAM, assert_live_equals_replay
from tests.integration.test_ledger_properties import _run

OLD_SCHEMA = (Path(__file__).parent / "schema_e478545.sql").read_text(encoding="utf-8")
CHECKS = {"payouts": "payouts_status_known", "outbox": "outbox_status_known", "alerts": "alerts_status_known"}
# One row per table with every NOT NULL column, the status as $1.
ROWS = {
    "payouts": "INSERT INTO periodya.payouts (payout_id, payee_id, amount, currency, destination, status, "
               "ledger_finalized, funds_returned, attempts, version, created_at, updated_at, status_changed_at) "
               "VALUES ($2, 'p', 1, 'USD', 'ba_1', $1, false, false, 0, 1, now(), now(), now())",
    "outbox": "INSERT INTO periodya.outbox (payout_id, status, attempts, created_at, updated_at) "
              "VALUES ($2, $1, 0, now(), now())",
    "alerts": "INSERT INTO periodya.alerts (alert_id, code, severity, status, subject, details, remedy, raised_at) "
              "VALUES ($2, 'X', 'warning', $1, 's', '{}', 'r', now())",
}
KNOWN = {"payouts": "FINALIZED", "outbox": "DONE", "alerts": "ACKNOWLEDGED"}
META = Meta(actor="test:upgrade")


async def migrate_old(conn: asyncpg.Connection) -> None:
    """What `periodya migrate` did with the old schema.sql (periodya/db.py at e478545)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(7305861150284930)")
        await conn.execute(OLD_SCHEMA)
        await conn.execute("INSERT INTO periodya.schema_migrations (digest) VALUES ($1) ON CONFLICT DO NOTHING",
                           hashlib.sha256(OLD_SCHEMA.encode()).hexdigest())


@pytest.fixture
async def old_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database made by the old schema.sql (not the session's template)."""
    name = "t_old_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        url = with_database(server_url, name)
        conn = await asyncpg.connect(url)
        try:
            await migrate_old(conn)
        finally:
            await conn.close()
        yield url
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def old_pool(old_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.connect_pool(old_url, min_size=1, max_size=10)
    yield p
    await p.close()


async def migrate_new(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await db.migrate(conn)


async def raise_alert(store: EventStore, subject: str) -> None:
    async def body(uow: UnitOfWork) -> None:
        await alert_commands.raise_alert(uow, "SENT_STUCK", "warning", subject, {"why": "test"}, "look")

    await run_command(store, META, body)


async def resolve_alert(store: EventStore, subject: str) -> None:
    async def body(uow: UnitOfWork) -> None:
        await alert_commands.auto_resolve(uow, "SENT_STUCK", subject)

    await run_command(store, META, body)


async def constraints(pool: asyncpg.Pool) -> set[str]:
    return set(await pool.fetchval(
        "SELECT coalesce(array_agg(conname::text), '{}') FROM pg_constraint "
        "WHERE connamespace = 'periodya'::regnamespace AND conname = ANY($1::text[])", list(CHECKS.values())))


async def refused(pool: asyncpg.Pool, table: str, status: str) -> bool:
    try:
        await pool.execute(ROWS[table], status, f"{table}-{status}")
    except asyncpg.CheckViolationError as exc:
        assert exc.constraint_name == CHECKS[table]
        return True
    return False


async def test_migrate_upgrades_a_database_made_by_the_previous_schema(old_pool: asyncpg.Pool) -> None:
    store = EventStore(old_pool)
    await _run(store, "old-", PROGRAM)
    await raise_alert(store, "po_old")
    assert await constraints(old_pool) == set()
    assert await old_pool.fetchval("SELECT to_regproc('periodya.append_batch') IS NOT NULL")

    await migrate_new(old_pool)
    await migrate_new(old_pool)  # idempotent: the CHECKs are added once

    assert await constraints(old_pool) == set(CHECKS.values())
    assert await old_pool.fetchval("SELECT to_regproc('periodya.append_batch') IS NULL")
    digests = set(await old_pool.fetchval("SELECT array_agg(digest) FROM schema_migrations"))
    assert digests == {hashlib.sha256(OLD_SCHEMA.encode()).hexdigest(), db.schema_digest()}
    # the old chains still verify (chain_breaks now starts them from genesis_hash()), and go on
    await resolve_alert(store, "po_old")
    await raise_alert(store, "po_old")  # appends to a stream begun before the upgrade
    await _run(store, "new-", PROGRAM)
    assert (await chain_breaks_in_db(old_pool)).ok
    report = await verify_chains(old_pool)
    assert report.ok and report.events == await old_pool.fetchval("SELECT count(*) FROM events")
    await assert_money_invariants(old_pool)
    await assert_live_equals_replay(old_pool)  # replay builds its scratch tables, CHECKs and all
    for table, status in KNOWN.items():
        assert not await refused(old_pool, table, status)
        assert await refused(old_pool, table, "BOGUS")


@pytest.mark.parametrize("table", sorted(CHECKS))
async def test_a_status_outside_the_lifecycle_is_refused(pool: asyncpg.Pool, table: str) -> None:
    """On a database made by today's schema.sql: statuses are exact (upper case), anything else is refused."""
    assert await refused(pool, table, "NOPE")
    assert await refused(pool, table, KNOWN[table].lower())
    assert not await refused(pool, table, KNOWN[table])
    assert await pool.fetchval(f"SELECT count(*) FROM periodya.{table}") == 1


async def test_an_unknown_status_stops_the_upgrade_and_changes_nothing(old_pool: asyncpg.Pool) -> None:
    """A row the CHECK would refuse makes migrate fail whole: no CHECK, append_batch kept, digest unrecorded."""
    await old_pool.execute(ROWS["outbox"], "LOST", "po_lost")
    with pytest.raises(asyncpg.CheckViolationError):
        await migrate_new(old_pool)
    assert await constraints(old_pool) == set()
    assert await old_pool.fetchval("SELECT to_regproc('periodya.append_batch') IS NOT NULL")
    assert not await old_pool.fetchval("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE digest = $1)",
                                       db.schema_digest())
    await old_pool.execute("DELETE FROM outbox WHERE payout_id = 'po_lost'")
    await migrate_new(old_pool)
    assert await constraints(old_pool) == set(CHECKS.values())
