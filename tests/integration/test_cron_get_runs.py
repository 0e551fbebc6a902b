"""GET /api/admin/ops/run/{job} as Vercel Cron calls it: GET with `Authorization: Bearer $CRON_SECRET`.
The cron secret only: an admin session's GET changes nothing and is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from periodya.admin import sessions, users
from periodya.config import Settings
from periodya.eventstore import EventStore
from periodya.handlers.unit_of_work import Meta
from periodya.http.app import create_app
from tests.conftest import CRON_SECRET

VERCEL = {"Authorization": f"Bearer {CRON_SECRET}", "User-Agent": "vercel-cron/1.0"}


@pytest.fixture
async def client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    http = TestClient(TestServer(create_app(settings, pool)))
    await http.start_server()
    yield http
    await http.close()


async def runs(pool: asyncpg.Pool) -> list[tuple[str, str | None, str]]:
    return [tuple(r) for r in await pool.fetch("SELECT job, mode, trigger FROM job_runs ORDER BY run_id")]


async def test_a_vercel_style_get_runs_the_job(client: TestClient, pool: asyncpg.Pool) -> None:
    r = await client.get("/api/admin/ops/run/outbox?batch=50", headers=VERCEL)
    assert r.status == 200, await r.text()
    assert (await r.json())["job"] == "outbox"
    r = await client.get("/api/admin/ops/run/sentinel?mode=full", headers=VERCEL)
    assert r.status == 200, await r.text()
    assert await runs(pool) == [("outbox", None, "http:cron"), ("sentinel", "full", "http:cron")]


async def test_a_get_run_validates_like_a_post(client: TestClient, pool: asyncpg.Pool) -> None:
    for path in ("/api/admin/ops/run/no-such-job", "/api/admin/ops/run/outbox?batch=x",
                 "/api/admin/ops/run/sentinel?mode=weekly"):
        r = await client.get(path, headers=VERCEL)
        assert (r.status, r.content_type) == (422, "application/problem+json"), path
    assert await runs(pool) == []


async def test_a_session_cannot_run_a_job_with_get(client: TestClient, pool: asyncpg.Pool) -> None:
    user_id = await users.create_user(EventStore(pool), "ops@example.com", "correct horse battery staple",
                                      meta=Meta(actor="test"))
    token, _ = await sessions.create_session(pool, user_id)
    r = await client.get("/api/admin/ops/run/outbox", headers={"Authorization": f"Bearer {token}"})
    body = await r.json(content_type=None)
    assert (r.status, r.content_type, body["code"]) == (403, "application/problem+json", "FORBIDDEN")
    assert await runs(pool) == []
    r = await client.post("/api/admin/ops/run/outbox", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200  # the session's way is POST
    assert await runs(pool) == [("outbox", None, "http:admin:ops@example.com")]


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {CRON_SECRET}"])
async def test_a_get_run_without_the_cron_secret_is_401(client: TestClient, pool: asyncpg.Pool,
                                                        header: str | None) -> None:
    r = await client.get("/api/admin/ops/run/outbox", headers={"Authorization": header} if header else {})
    assert (r.status, r.content_type) == (401, "application/problem+json")
    assert await runs(pool) == []


async def test_head_never_runs_a_job(client: TestClient, pool: asyncpg.Pool) -> None:
    r = await client.head("/api/admin/ops/run/outbox", headers=VERCEL)
    assert r.status in (401, 405)
    assert await runs(pool) == []
