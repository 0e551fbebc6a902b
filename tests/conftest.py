"""Test harness: a real PostgreSQL for every integration test.

DATABASE_URL when set, else the embedded server the project starts itself (data kept in a temp dir
and reused across runs). A template database is migrated once per session; each test gets a fresh
database cloned from it, so tests are isolated and can run the real schema, triggers and all.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest

from periodya import db
from periodya.eventstore import EventStore


def with_database(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path="/" + name))


def database_name(url: str) -> str:
    return urlparse(url).path.lstrip("/")


@pytest.fixture(scope="session")
def server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    data = Path(os.environ.get("PERIODYA_TEST_DATA_DIR", Path(tempfile.gettempdir()) / "periodya-test-pg"))
    return db.start_embedded(data)


@pytest.fixture(scope="session")
async def template_url(server_url: str) -> AsyncIterator[str]:
    """One template per test session, named when the session starts (not at import: sessions forked
    from one process, as mutmut's are, must not share it), so several sessions may share one server."""
    template = f"periodya_tpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {template}")
    finally:
        await admin.close()
    url = with_database(server_url, template)
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    yield url
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def database_url(server_url: str, template_url: str) -> AsyncIterator[str]:
    name = "t_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {database_name(template_url)}")
        yield with_database(server_url, name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.connect_pool(database_url, min_size=2, max_size=40)
    yield p
    await p.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> EventStore:
    return EventStore(pool)


SERVICE_TOKEN = "test-service-token"
CRON_SECRET = "test-cron-secret"


@pytest.fixture
def settings(database_url: str):  # type: ignore[no-untyped-def]
    from periodya.config import Settings

    return Settings.from_env({"DATABASE_URL": database_url, "PERIODYA_SERVICE_TOKEN": SERVICE_TOKEN,
                              "PERIODYA_CRON_SECRET": CRON_SECRET})


@pytest.fixture
async def api(settings, pool: asyncpg.Pool):  # type: ignore[no-untyped-def]
    """A real HTTP server on a loopback port, and a client that sends the service token."""
    from aiohttp.test_utils import TestClient, TestServer

    from periodya.http.app import create_app

    server = TestServer(create_app(settings, pool))
    client = TestClient(server, headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
    await client.start_server()
    yield client
    await client.close()
