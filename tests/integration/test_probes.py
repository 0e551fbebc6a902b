"""GET /livez and GET /readyz against a real server and database: ready, then each way of not being
ready (pool closed, schema not at this code's version, event reader stalled behind an open transaction),
each a 503 application/problem+json NOT_READY naming the failed check."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from periodya import db
from periodya.config import Settings
from periodya.http import api_models, readiness
from periodya.http.app import create_app
from tests.conftest import SERVICE_TOKEN


@asynccontextmanager
async def serving(settings: Settings, pool: asyncpg.Pool,
                  tweak: Callable[[web.Application], None] = lambda app: None) -> AsyncIterator[TestClient]:
    app = create_app(settings, pool)
    tweak(app)
    client = TestClient(TestServer(app), headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def readyz(client: TestClient) -> tuple[int, str, dict[str, Any]]:
    r = await client.get("/readyz")
    return r.status, r.content_type, await r.json(content_type=None)


def not_ready(status: int, media: str, body: dict[str, Any], check: str, says: str) -> None:
    assert (status, media, body["code"], body["status"]) == (503, "application/problem+json", "NOT_READY", 503), body
    assert body["checks"][check].startswith(says), body
    api_models.Problem.model_validate(body)


async def test_live_and_ready(settings: Settings, pool: asyncpg.Pool) -> None:
    async with serving(settings, pool) as client:
        live = await client.get("/livez")
        assert live.status == 200 and await live.json() == {"status": "ok"}
        status, media, body = await readyz(client)
        assert (status, media) == (200, "application/json"), body
        assert body == {"status": "ready", "checks": {"database": "ok", "schema": "ok", "eventReader": "ok"}}


async def test_not_ready_when_the_database_is_unreachable(settings: Settings, database_url: str) -> None:
    own = await db.connect_pool(database_url, min_size=1, max_size=2)
    async with serving(settings, own) as client:
        assert (await readyz(client))[0] == 200
        await own.close()
        not_ready(*await readyz(client), "database", "unreachable")
        assert (await client.get("/livez")).status == 200  # the process is still up


async def test_not_ready_until_this_codes_schema_is_migrated(settings: Settings, pool: asyncpg.Pool) -> None:
    async with serving(settings, pool) as client:
        await pool.execute("DELETE FROM periodya.schema_migrations")  # as a database migrated by older code
        not_ready(*await readyz(client), "schema", "outdated")
        async with pool.acquire() as conn:
            await db.migrate(conn)
        assert (await readyz(client))[0] == 200


async def test_not_ready_while_the_event_reader_is_stalled(settings: Settings, pool: asyncpg.Pool,
                                                           database_url: str) -> None:
    def no_grace(app: web.Application) -> None:
        app[readiness.STALL_SECONDS] = 0.0  # any event waiting behind the horizon counts as stalled

    async with serving(settings, pool, no_grace) as client:
        holder = await asyncpg.connect(database_url)
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.fetchval("SELECT pg_current_xact_id()")  # an xid: the snapshot horizon stops here
            funded = await client.post("/api/escrows", json={"escrowId": "e-stall", "amount": 5, "currency": "EUR"})
            assert funded.status == 201  # committed, but behind the open transaction for every reader
            not_ready(*await readyz(client), "eventReader", "stalled")
            await tx.rollback()
        finally:
            await holder.close()
