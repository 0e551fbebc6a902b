"""When the database refuses connections, clients get 503 with Retry-After, never a 500."""

from __future__ import annotations

import uuid
from urllib.parse import urlparse, urlunparse

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from periodya import db
from periodya.config import Settings
from periodya.http.app import create_app
from tests.conftest import SERVICE_TOKEN


def _as_user(url: str, user: str) -> str:
    parts = urlparse(url)
    netloc = f"{user}@{parts.hostname}" + (f":{parts.port}" if parts.port else "") if parts.hostname else f"{user}@"
    return urlunparse(parts._replace(netloc=netloc))


async def test_exhausted_database_is_503(database_url: str, pool: asyncpg.Pool, settings: Settings) -> None:
    role = f"limited_{uuid.uuid4().hex[:8]}"
    await pool.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    await pool.execute(f"GRANT USAGE ON SCHEMA periodya TO {role}; "
                       f"GRANT SELECT ON ALL TABLES IN SCHEMA periodya TO {role}")
    url = _as_user(database_url, role)
    holder = await asyncpg.connect(url)  # takes the role's only connection
    limited = await db.connect_pool(url, min_size=0, max_size=2)
    client = TestClient(TestServer(create_app(settings, limited)),
                        headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
    await client.start_server()
    try:
        resp = await client.get("/api/escrows/anything")
        body = await resp.json(content_type=None)
        assert resp.status == 503, body
        assert (body["code"], resp.headers["Retry-After"]) == ("UNAVAILABLE", "5")
        assert resp.content_type == "application/problem+json" and "Traceback" not in str(body)
        await holder.close()
        resp = await client.get("/api/escrows/anything")
        assert resp.status == 404  # once a connection is free again, answers are normal
    finally:
        await client.close()
        await limited.close()
        if not holder.is_closed():
            await holder.close()
        await pool.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
