"""Login throttling by client address (issue 13, finding 5): a stranger's failures must not lock the real
admin out, online guessing stays throttled per (email, address), per address, and slowed per email
across addresses; behind a trusted proxy the client address comes from X-Forwarded-For, and only there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from periodya.admin import throttle
from periodya.config import Settings, parse_trusted
from periodya.errors import ConfigError
from periodya.http.app import create_app
from periodya.http.client_ip import client_address
from tests.clients import Client
from tests.integration.test_admin_auth import PASSWORD, make_user


async def _client(database_url: str, pool: asyncpg.Pool, **env: str) -> Client:
    settings = Settings.from_env({"DATABASE_URL": database_url, **env})
    http = TestClient(TestServer(create_app(settings, pool)))
    await http.start_server()
    return http


@pytest.fixture
async def behind_proxy(database_url: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    """The test client plays a reverse proxy on 127.0.0.1, which the server trusts."""
    http = await _client(database_url, pool, PERIODYA_TRUSTED_PROXIES="127.0.0.1/32, ::1")
    yield http
    await http.close()


@pytest.fixture
async def direct(database_url: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    http = await _client(database_url, pool)
    yield http
    await http.close()


async def login(client: Client, password: str, address: str | None, email: str = "ops@example.com"
                ) -> tuple[int, Any]:
    headers = {"X-Forwarded-For": address} if address else {}
    resp = await client.post("/api/auth/login", json={"email": email, "password": password}, headers=headers)
    return resp.status, await resp.json(content_type=None)


async def test_a_strangers_failures_do_not_lock_the_admin_out(pool: asyncpg.Pool, behind_proxy: Client) -> None:
    await make_user(pool)
    for _ in range(throttle.MAX_FAILURES_PER_EMAIL):
        assert (await login(behind_proxy, "a wrong guess", "203.0.113.7"))[0] == 401
    # The stranger is refused, even with the right password, from their address...
    assert (await login(behind_proxy, PASSWORD, "203.0.113.7"))[0] == 429
    # ...but the admin, from another address, gets in.
    status, body = await login(behind_proxy, PASSWORD, "198.51.100.20")
    assert status == 200, body
    rows = await pool.fetch("SELECT DISTINCT remote_addr FROM login_failures")
    assert [r["remote_addr"] for r in rows] == ["203.0.113.7"]


async def test_many_failures_across_addresses_slow_the_email_down_but_never_refuse(
        pool: asyncpg.Pool, behind_proxy: Client) -> None:
    await make_user(pool)
    for i in range(throttle.SLOWDOWN_AFTER):
        assert (await login(behind_proxy, "a wrong guess", f"203.0.113.{i + 1}"))[0] == 401
    attempt = await throttle.begin_attempt(pool, "ops@example.com", "198.51.100.20")
    assert attempt.delay == throttle.BASE_DELAY
    await throttle.succeeded(pool, attempt)
    other = await throttle.begin_attempt(pool, "someone-else@example.com", "198.51.100.20")
    assert other.delay == 0.0
    await throttle.succeeded(pool, other)
    assert (await login(behind_proxy, PASSWORD, "198.51.100.20"))[0] == 200


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(pool: asyncpg.Pool,
                                                                            direct: Client) -> None:
    await make_user(pool)
    # A stranger rotating X-Forwarded-For is still one address: the per-address limit holds.
    for i in range(throttle.MAX_FAILURES_PER_REMOTE):
        assert (await login(direct, "a wrong guess", f"203.0.113.{i}", email=f"g{i}@example.com"))[0] == 401
    status, body = await login(direct, PASSWORD, "198.51.100.20")
    assert status == 429 and body["code"] == "TOO_MANY_ATTEMPTS"
    rows = await pool.fetch("SELECT DISTINCT remote_addr FROM login_failures")
    assert [r["remote_addr"] for r in rows] == ["127.0.0.1"]


def test_client_address_reads_forwarded_for_from_the_right() -> None:
    proxies = parse_trusted("10.0.0.0/8,::1")
    assert client_address("10.0.0.5", ["198.51.100.1, 10.0.0.9"], proxies) == "198.51.100.1"
    # The leftmost entry is the client's own claim: a spoofed hop before the real one is not believed.
    assert client_address("10.0.0.5", ["6.6.6.6, 198.51.100.1"], proxies) == "198.51.100.1"
    assert client_address("10.0.0.5", ["198.51.100.1", "10.1.1.1"], proxies) == "198.51.100.1"  # two headers
    assert client_address("10.0.0.5", [], proxies) == "10.0.0.5"
    assert client_address("10.0.0.5", ["not-an-ip"], proxies) == "10.0.0.5"
    assert client_address("192.0.2.9", ["198.51.100.1"], proxies) == "192.0.2.9"  # untrusted peer
    assert client_address("::1", ["[2001:db8::1]:443"], proxies) == "2001:db8::1"
    assert client_address("::ffff:10.0.0.5", ["198.51.100.1"], proxies) == "198.51.100.1"
    with pytest.raises(ConfigError, match="PERIODYA_TRUSTED_PROXIES"):
        parse_trusted("10.0.0.0/8, proxy.example")
