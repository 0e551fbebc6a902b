"""Admin sessions (issue 13, finding 9): an idle timeout (PERIODYA_SESSION_IDLE_MINUTES) besides the fixed
lifetime, and `periodya admin revoke-sessions EMAIL`, recorded in the log with its actor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from periodya.admin import sessions
from periodya.errors import ConfigError
from periodya.http.app import create_app
from tests.integration.test_admin_auth import PROBE, bearer, make_user, run_cli, token_for


@pytest.fixture
async def client(settings: Any, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    monkeypatch.setenv("PERIODYA_SESSION_IDLE_MINUTES", "20")
    http = TestClient(TestServer(create_app(settings, pool)))
    await http.start_server()
    yield http
    await http.close()


async def probe(client: TestClient, token: str) -> int:
    return (await client.get(PROBE, headers=bearer(token))).status


async def test_a_session_idle_past_the_timeout_is_refused(pool: asyncpg.Pool, client: TestClient) -> None:
    await make_user(pool)
    token = await token_for(client)
    assert await probe(client, token) == 404  # authenticated: the router ran
    # Used 15 minutes ago: still live, and this use moves last_seen_at to now.
    await pool.execute("UPDATE admin_sessions SET last_seen_at = now() - interval '15 minutes'")
    assert await probe(client, token) == 404
    assert await pool.fetchval("SELECT last_seen_at > now() - interval '1 minute' FROM admin_sessions")
    # Unused for 22 minutes (idle timeout 20, touched at most once a minute), well inside its 12 h life.
    await pool.execute("UPDATE admin_sessions SET last_seen_at = now() - interval '22 minutes'")
    assert await probe(client, token) == 401


def test_idle_timeout_is_configured_in_minutes() -> None:
    assert sessions.session_idle_from_env({}) == timedelta(minutes=30)
    assert sessions.session_idle_from_env({sessions.IDLE_ENV: "0.5"}) == timedelta(seconds=30)
    assert sessions.touch_every(timedelta(seconds=20)) == timedelta(seconds=5)
    for bad in ("abc", "0", "-5", "99999999"):
        with pytest.raises(ConfigError, match=sessions.IDLE_ENV):
            sessions.session_idle_from_env({sessions.IDLE_ENV: bad})


async def test_revoke_sessions_ends_every_session_of_one_user(database_url: str, pool: asyncpg.Pool,
                                                              client: TestClient) -> None:
    user_id = await make_user(pool)
    await make_user(pool, "other@example.com")
    mine = [await token_for(client) for _ in range(2)]
    theirs = await token_for(client, "other@example.com")
    assert [await probe(client, t) for t in [*mine, theirs]] == [404, 404, 404]

    result = await run_cli(database_url, "admin", "revoke-sessions", "Ops@Example.com", stdin="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "revoked 2 session(s) of ops@example.com"
    assert [await probe(client, t) for t in [*mine, theirs]] == [401, 401, 404]
    [event] = await pool.fetch("SELECT data, metadata FROM events WHERE stream_id = $1 AND event_type = $2",
                               f"admin-user-{user_id}", "AdminSessionsRevoked")
    assert event["data"]["revoked"] == 2 and event["data"]["email"] == "ops@example.com"
    assert event["metadata"]["actor"].startswith("cli:")
    # A new login works; revoking again finds nothing live.
    assert await probe(client, await token_for(client)) == 404

    unknown = await run_cli(database_url, "admin", "revoke-sessions", "nobody@example.com", stdin="")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "nobody@example.com" in unknown.stderr
