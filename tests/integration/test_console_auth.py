"""The ops console's cookie session over real HTTP (no browser): cookie attributes, CSRF on every
state-changing call, the cookie accepted on /api/admin/** only (never the platform routes, never as the
cron secret), the read-only ops_viewer role, and the console's security headers.
The browser half is tests/e2e/test_ops_console.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import asyncpg
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer

from periodya.admin import users
from periodya.eventstore import EventStore
from periodya.handlers.unit_of_work import Meta
from periodya.http.app import create_app
from periodya.http.console_auth import csrf_for
from tests.clients import Client
from tests.conftest import CRON_SECRET

PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"


@pytest.fixture
async def client(settings: Any, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    """A real server; the client keeps no cookies: each test sends the cookie it means to."""
    http = TestClient(TestServer(create_app(settings, pool)), cookie_jar=DummyCookieJar())
    await http.start_server()
    yield http
    await http.close()


async def make_user(pool: asyncpg.Pool, email: str, roles: tuple[str, ...]) -> None:
    await users.create_user(EventStore(pool), email, PASSWORD, roles, meta=Meta(actor="test"))


async def console_login(client: Client, email: str, host: str | None = None) -> tuple[dict[str, Any], SimpleCookie]:
    headers = {"Host": host} if host else {}
    resp = await client.post("/ops/session", json={"email": email, "password": PASSWORD}, headers=headers)
    body = await resp.json(content_type=None)
    assert resp.status == 200, body
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie"):
        jar.load(header)
    return body, jar


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"periodya_session={token}"}


async def test_login_sets_httponly_strict_cookies_and_a_csrf_token(client: Client, pool: asyncpg.Pool) -> None:
    await make_user(pool, "ops@example.com", (users.PLATFORM_ADMIN,))
    body, jar = await console_login(client, "ops@example.com")
    session, csrf = jar["periodya_session"], jar["periodya_csrf"]
    assert body["email"] == "ops@example.com" and body["platformAdmin"] is True
    assert body["csrfToken"] == csrf.value == csrf_for(session.value)
    assert session["httponly"] and session["samesite"] == "Strict" and session["path"] == "/"
    assert not csrf["httponly"] and csrf["samesite"] == "Strict"
    assert not session["secure"]  # on localhost over http the browser would drop a Secure cookie
    assert "token" not in body  # the session token never reaches the page's script

    _, remote = await console_login(client, "ops@example.com", host="ledger.example")
    assert remote["periodya_session"]["secure"] and remote["periodya_csrf"]["secure"]
    resp = await client.post("/ops/session", json={"email": "ops@example.com", "password": PASSWORD},
                             headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in resp.headers.getall("Set-Cookie")[0]


async def test_cookie_needs_csrf_on_state_changing_calls(client: Client, pool: asyncpg.Pool) -> None:
    await make_user(pool, "ops@example.com", (users.PLATFORM_ADMIN,))
    _, jar = await console_login(client, "ops@example.com")
    token = jar["periodya_session"].value

    resp = await client.get("/api/admin/ops/health", headers=cookie(token))
    assert resp.status == 200  # reads need no CSRF token
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": csrf_for("another-session")}):
        resp = await client.post("/api/admin/ops/alerts/alt_nope/ack", headers={**cookie(token), **headers}, json={})
        body = await resp.json(content_type=None)
        assert (resp.status, resp.content_type, body["code"]) == (403, PROBLEM, "FORBIDDEN"), body
        assert "X-CSRF-Token" in body["detail"]
    resp = await client.post("/api/admin/ops/alerts/alt_nope/ack",
                             headers={**cookie(token), "X-CSRF-Token": csrf_for(token)}, json={})
    assert resp.status == 404  # past authentication and CSRF: the alert does not exist

    resp = await client.post("/api/admin/ops/run/sentinel", headers={**cookie(token), "X-CSRF-Token": csrf_for(token)})
    assert resp.status == 200 and (await resp.json())["job"] == "sentinel:recent"


async def test_cookie_is_never_accepted_for_platform_routes_or_as_the_cron_secret(client: Client,
                                                                                  pool: asyncpg.Pool) -> None:
    await make_user(pool, "ops@example.com", (users.PLATFORM_ADMIN,))
    _, jar = await console_login(client, "ops@example.com")
    token = jar["periodya_session"].value
    for method, path in (("GET", "/api/payouts/pay_x"), ("GET", "/api/payees/p1/balances"),
                         ("POST", "/api/escrows")):
        resp = await client.request(method, path, headers={**cookie(token), "X-CSRF-Token": csrf_for(token)},
                                    json={})
        assert resp.status == 401, (path, await resp.text())
    # The cron secret in the cookie is not the cron secret: no session has it, so 401.
    resp = await client.post("/api/admin/ops/run/outbox",
                             headers={**cookie(CRON_SECRET), "X-CSRF-Token": csrf_for(CRON_SECRET)})
    assert resp.status == 401 and (await resp.json())["code"] == "UNAUTHENTICATED"
    # A missing session: no cookie, no bearer.
    resp = await client.get("/api/admin/ops/health")
    assert resp.status == 401
    resp = await client.get("/ops/session")
    assert resp.status == 401


async def test_logout_needs_csrf_and_revokes_the_session(client: Client, pool: asyncpg.Pool) -> None:
    await make_user(pool, "ops@example.com", (users.PLATFORM_ADMIN,))
    _, jar = await console_login(client, "ops@example.com")
    token = jar["periodya_session"].value
    resp = await client.post("/ops/session/logout", headers=cookie(token))
    assert resp.status == 403
    assert (await client.get("/api/admin/ops/health", headers=cookie(token))).status == 200
    resp = await client.post("/ops/session/logout", headers={**cookie(token), "X-CSRF-Token": csrf_for(token)})
    assert resp.status == 204
    assert any("periodya_session=\"\"" in h or "periodya_session=;" in h for h in resp.headers.getall("Set-Cookie"))
    assert (await client.get("/api/admin/ops/health", headers=cookie(token))).status == 401
    assert (await client.get("/api/admin/ops/health", headers={"Authorization": f"Bearer {token}"})).status == 401


async def test_ops_viewer_reads_and_changes_nothing(client: Client, pool: asyncpg.Pool) -> None:
    await make_user(pool, "viewer@example.com", (users.OPS_VIEWER,))
    await make_user(pool, "support@example.com", ("viewer",))
    body, jar = await console_login(client, "viewer@example.com")
    token = jar["periodya_session"].value
    assert body["platformAdmin"] is False
    for path in ("/api/admin/ops/health", "/api/admin/ops/alerts", "/api/admin/payouts", "/api/admin/jobs"):
        assert (await client.get(path, headers=cookie(token))).status == 200, path
    for path in ("/api/admin/ops/run/outbox", "/api/admin/ops/payouts/pay_x/quarantine", "/api/admin/ops/alerts/a/ack"):
        resp = await client.post(path, headers={**cookie(token), "X-CSRF-Token": csrf_for(token)},
                                 json={"reason": "x"})
        assert (resp.status, (await resp.json())["code"]) == (403, "FORBIDDEN"), path
    _, other = await console_login(client, "support@example.com")  # a role without any admin grant
    resp = await client.get("/api/admin/ops/health", headers=cookie(other["periodya_session"].value))
    assert resp.status == 403


async def test_console_pages_carry_a_strict_csp(client: Client) -> None:
    for path in ("/ops/", "/ops/assets/app.js", "/ops/assets/app.css"):
        resp = await client.get(path)
        assert resp.status == 200, path
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    html = await (await client.get("/ops/")).text()
    assert "<script src=\"/ops/assets/app.js\"" in html and "<script>" not in html and " on" not in html.split(
        "<body>")[1].replace(" onclick", "X")  # no inline script or handlers
    assert (await client.get("/ops/assets/..%2Fconsole_routes.py")).status == 404
    assert (await client.get("/ops/assets/nope.js")).status == 404
