"""Append-only guard and hash-chain verification."""

from __future__ import annotations

import asyncpg
import pytest

from periodya.eventstore import NO_STREAM, EventStore, NewEvent, StreamAppend
from periodya.eventstore.verify import verify_chains


async def _seed(store: EventStore) -> None:
    for s in ("alpha", "beta"):
        await store.append([StreamAppend(s, NO_STREAM, [NewEvent("E", {"n": i, "name": "żółw"}) for i in range(4)])])


@pytest.mark.parametrize("sql", [
    "UPDATE events SET data = '{}' WHERE seq = 1",
    "DELETE FROM events WHERE seq = 1",
    "TRUNCATE events",
])
async def test_events_table_refuses_changes(store: EventStore, pool: asyncpg.Pool, sql: str) -> None:
    await _seed(store)
    with pytest.raises(asyncpg.PostgresError) as info:
        await pool.execute(sql)
    assert info.value.sqlstate == "PE001"
    assert await pool.fetchval("SELECT count(*) FROM events") == 8
    assert (await verify_chains(pool)).ok


async def test_verify_names_a_changed_event(store: EventStore, pool: asyncpg.Pool) -> None:
    await _seed(store)
    async with pool.acquire() as c, c.transaction():
        await c.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await c.execute("""UPDATE events SET data = '{"n": 99, "name": "żółw"}'
                           WHERE stream_id = 'beta' AND stream_version = 3""")
        await c.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    report = await verify_chains(pool)
    assert [(b.stream_id, b.stream_version) for b in report.broken] == [("beta", 3)]
    assert "changed" in report.broken[0].reason


async def test_verify_names_a_removed_event(store: EventStore, pool: asyncpg.Pool) -> None:
    await _seed(store)
    async with pool.acquire() as c, c.transaction():
        await c.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await c.execute("DELETE FROM events WHERE stream_id = 'alpha' AND stream_version = 2")
        await c.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    report = await verify_chains(pool)
    assert [(b.stream_id, b.stream_version) for b in report.broken] == [("alpha", 3)]
    assert "gap" in report.broken[0].reason


async def test_database_hash_matches_python_hash(store: EventStore, pool: asyncpg.Pool) -> None:
    """The chain written by SQL is re-derivable without the database (hashing.chain_hash)."""
    from periodya.eventstore.hashing import GENESIS, chain_hash

    await _seed(store)
    rows = await pool.fetch("SELECT * FROM events WHERE stream_id = 'alpha' ORDER BY stream_version")
    prev = GENESIS
    for r in rows:
        prev = chain_hash(prev, r["stream_id"], r["stream_version"], r["event_type"], r["recorded_at"],
                          r["data"], r["metadata"])
        assert prev == bytes(r["hash"])


async def test_database_verifies_itself_like_python(store: EventStore, pool: asyncpg.Pool) -> None:
    """chain_breaks (in SQL, for the sentinel) and verify_chains (in Python, for audits) agree."""
    from periodya.eventstore.verify import chain_breaks_in_db

    await _seed(store)
    assert (await chain_breaks_in_db(pool)).ok
    async with pool.acquire() as c, c.transaction():
        await c.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await c.execute("""UPDATE events SET data = '{"n": 99, "name": "żółw"}'
                           WHERE stream_id = 'beta' AND stream_version = 3""")
        await c.execute("DELETE FROM events WHERE stream_id = 'alpha' AND stream_version = 2")
        await c.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    in_db, in_python = await chain_breaks_in_db(pool), await verify_chains(pool)
    expected = [("alpha", 3), ("beta", 3)]
    assert [(b.stream_id, b.stream_version) for b in in_db.broken] == expected
    assert [(b.stream_id, b.stream_version, b.reason) for b in in_db.broken] == [
        (b.stream_id, b.stream_version, b.reason) for b in in_python.broken]
    assert [(b.stream_id, b.stream_version) for b in (await chain_breaks_in_db(pool, ["beta"])).broken] == [
        ("beta", 3)]
