"""Admin user management over HTTP (periodya/http/admin_user_routes.py, periodya/admin/manage.py): list,
disable and enable, role change, password reset, throttle unlock; the guard rails; the viewer refused;
unknown users 404; bad input 4xx problem+json. A real server on a loopback port, a real database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from periodya.admin import manage, throttle, users
from periodya.eventstore import EventStore
from periodya.handlers.unit_of_work import Meta
from periodya.http.app import create_app
from periodya.http.console_auth import CSRF_HEADER, SESSION_COOKIE, csrf_for
from tests.clients import Client
from tests.integration.test_admin_auth import PASSWORD, bearer, login, make_user, token_for

A, B, V = "alice@example.com", "bob@example.com", "viv@example.com"
WHY = {"reason": "offboarding ticket OPS-1"}


@pytest.fixture
async def client(settings: Any, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    http = TestClient(TestServer(create_app(settings, pool)))
    await http.start_server()
    yield http
    await http.close()


async def call(client: Client, token: str, method: str, path: str, body: Any = None,
               **kwargs: Any) -> tuple[int, Any]:
    resp = await client.request(method, path, headers=bearer(token), json=body, **kwargs)
    return resp.status, await resp.json(content_type=None)


def problem(result: tuple[int, Any], status: int, code: str) -> None:
    assert (result[0], result[1]["code"]) == (status, code), result


async def events(pool: asyncpg.Pool, event_type: str) -> list[dict[str, Any]]:
    """The events of one type, oldest first, as {"data": ..., "metadata": ..., "text": both as JSON text}."""
    rows = await pool.fetch("SELECT data::text AS d, metadata::text AS m FROM events WHERE event_type = $1 "
                            "ORDER BY seq", event_type)
    return [{"data": json.loads(r["d"]), "metadata": json.loads(r["m"]), "text": r["d"] + r["m"]} for r in rows]


async def alice_and_bob(pool: asyncpg.Pool, client: Client) -> tuple[str, str]:
    """Two platform admins; returns alice's token and bob's user id."""
    await make_user(pool, A)
    bob = await make_user(pool, B)
    return await token_for(client, A), bob


async def test_list_shows_roles_state_and_last_login_and_a_viewer_may_read_it(pool: asyncpg.Pool,
                                                                              client: Client) -> None:
    token, bob = await alice_and_bob(pool, client)
    await make_user(pool, V, roles=("ops_viewer",))
    status, body = await call(client, token, "GET", "/api/admin/users")
    assert status == 200, body
    assert [u["email"] for u in body["users"]] == [A, B, V]
    alice, bob_item, viv = body["users"]
    assert (alice["roles"], alice["disabled"], alice["liveSessions"]) == (["platform_admin"], False, 1)
    assert alice["lastLoginAt"].endswith("Z") and alice["lastSeenAt"] and alice["createdAt"]
    assert (bob_item["userId"], bob_item["lastLoginAt"], bob_item["lastSeenAt"]) == (bob, None, None)
    assert viv["roles"] == ["ops_viewer"]
    assert "password" not in str(body).lower() and "$argon2" not in str(body)

    viewer = await token_for(client, V)
    status, seen = await call(client, viewer, "GET", "/api/admin/users")
    assert status == 200 and len(seen["users"]) == 3
    for path, body_ in ((f"/api/admin/users/{B}/disable", WHY), (f"/api/admin/users/{B}/enable", WHY),
                        (f"/api/admin/users/{B}/role", {"role": "ops_viewer", **WHY}),
                        (f"/api/admin/users/{B}/reset-password", WHY),
                        ("/api/admin/login-throttle/unlock", {"email": B, **WHY})):
        problem(await call(client, viewer, "POST", path, body_), 403, "FORBIDDEN")
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE 'admin-%' "
                               "AND event_type <> 'AdminUserCreated'") == 0
    problem(await call(client, token, "GET", "/api/admin/users?limit=5"), 400, "VALIDATION_FAILED")


async def test_disable_revokes_every_session_at_once_and_enable_lets_them_log_in_again(pool: asyncpg.Pool,
                                                                                      client: Client) -> None:
    token, bob = await alice_and_bob(pool, client)
    bob_tokens = [await token_for(client, B), await token_for(client, B)]
    status, body = await call(client, token, "POST", f"/api/admin/users/{B.upper()}/disable", WHY)
    assert status == 200, body
    assert (body["changed"], body["sessionsRevoked"], body["user"]["disabled"], body["user"]["liveSessions"]) == (
        True, 2, True, 0)
    for bob_token in bob_tokens:
        assert (await client.get("/api/auth/me", headers=bearer(bob_token))).status == 401
    assert (await login(client, B))[0] == 401
    [event] = await events(pool, "AdminUserDisabled")
    assert event["data"] == {"userId": bob, "email": B, "sessionsRevoked": 2}
    assert (event["metadata"]["actor"], event["metadata"]["reason"]) == (f"admin:{A}", "offboarding ticket OPS-1")

    status, again = await call(client, token, "POST", f"/api/admin/users/{bob}/disable", WHY)  # by user id
    assert (status, again["changed"], again["sessionsRevoked"]) == (200, False, 0)
    assert len(await events(pool, "AdminUserDisabled")) == 1  # a repeat writes nothing

    status, body = await call(client, token, "POST", f"/api/admin/users/{bob}/enable", {"reason": "  back  "})
    assert (status, body["changed"], body["user"]["disabled"]) == (200, True, False), body
    [enabled] = await events(pool, "AdminUserEnabled")
    assert (enabled["data"], enabled["metadata"]["reason"]) == ({"userId": bob, "email": B}, "back")
    assert (await login(client, B))[0] == 200
    for bob_token in bob_tokens:  # the old sessions stay revoked
        assert (await client.get("/api/auth/me", headers=bearer(bob_token))).status == 401


async def test_an_admin_cannot_disable_or_demote_themselves(pool: asyncpg.Pool, client: Client) -> None:
    token, _ = await alice_and_bob(pool, client)
    problem(await call(client, token, "POST", f"/api/admin/users/{A}/disable", WHY), 409, "SELF_CHANGE_REFUSED")
    result = await call(client, token, "POST", f"/api/admin/users/{A}/role", {"role": "ops_viewer", **WHY})
    problem(result, 409, "SELF_CHANGE_REFUSED")
    assert "ask another admin" in result[1]["detail"]
    assert await pool.fetchrow("SELECT roles, disabled FROM admin_users WHERE email = $1", A) == (
        ["platform_admin"], False)
    status, body = await call(client, token, "POST", f"/api/admin/users/{A}/role", {"role": "platform_admin", **WHY})
    assert (status, body["changed"]) == (200, False)  # keeping one's own role is no change
    assert (await client.get("/api/auth/me", headers=bearer(token))).status == 200


async def test_the_last_active_admin_is_never_disabled_or_demoted(pool: asyncpg.Pool) -> None:
    store, meta = EventStore(pool), Meta(actor="cli:root", reason="test")
    await make_user(pool, A)
    await make_user(pool, B, roles=("ops_viewer",))
    with pytest.raises(manage.LastActiveAdmin):
        await manage.set_disabled(store, A, True, actor_email=None, meta=meta)
    with pytest.raises(manage.LastActiveAdmin):
        await manage.set_role(store, A, "ops_viewer", actor_email=None, meta=meta)
    # A disabled admin does not count as the active one that must remain.
    await manage.set_role(store, B, "platform_admin", actor_email=None, meta=meta)
    await manage.set_disabled(store, B, True, actor_email=None, meta=meta)
    with pytest.raises(manage.LastActiveAdmin):
        await manage.set_disabled(store, A, True, actor_email=None, meta=meta)


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    await make_user(pool, A)
    await make_user(pool, B)
    for _ in range(5):
        results = await asyncio.gather(
            manage.set_role(store, B, "ops_viewer", actor_email=A, meta=Meta(actor=f"admin:{A}", reason="race")),
            manage.set_role(store, A, "ops_viewer", actor_email=B, meta=Meta(actor=f"admin:{B}", reason="race")),
            return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["Change", "LastActiveAdmin"], results
        assert await pool.fetchval("SELECT count(*) FROM admin_users WHERE 'platform_admin' = ANY(roles) "
                                   "AND NOT disabled") == 1
        await pool.execute("UPDATE admin_users SET roles = '{platform_admin}'")


async def test_role_change_takes_effect_on_the_next_request_and_is_recorded(pool: asyncpg.Pool,
                                                                            client: Client) -> None:
    token, bob = await alice_and_bob(pool, client)
    bob_token = await token_for(client, B)
    status, body = await call(client, token, "POST", f"/api/admin/users/{B}/role", {"role": "ops_viewer", **WHY})
    assert (status, body["changed"], body["user"]["roles"]) == (200, True, ["ops_viewer"]), body
    assert (await call(client, bob_token, "GET", "/api/admin/users"))[0] == 200  # still signed in, read-only
    problem(await call(client, bob_token, "POST", f"/api/admin/users/{A}/disable", WHY), 403, "FORBIDDEN")
    [event] = await events(pool, "AdminUserRoleChanged")
    assert event["data"] == {"userId": bob, "email": B, "rolesBefore": ["platform_admin"], "roles": ["ops_viewer"]}
    assert event["metadata"]["actor"] == f"admin:{A}"
    status, body = await call(client, token, "POST", f"/api/admin/users/{bob}/role",
                              {"role": "platform_admin", "reason": "back on call"})
    assert (status, body["user"]["roles"]) == (200, ["platform_admin"])
    assert (await call(client, bob_token, "POST", f"/api/admin/users/{V}/disable", WHY))[0] == 404  # admin again


async def test_reset_password_sets_or_generates_one_and_revokes_every_session(pool: asyncpg.Pool,
                                                                               client: Client) -> None:
    token, bob = await alice_and_bob(pool, client)
    bob_token = await token_for(client, B)
    new = "a brand new password 1"
    status, body = await call(client, token, "POST", f"/api/admin/users/{B}/reset-password", {"password": new, **WHY})
    assert (status, body["sessionsRevoked"], body["generatedPassword"]) == (200, 1, None), body
    assert (await client.get("/api/auth/me", headers=bearer(bob_token))).status == 401
    assert (await login(client, B, PASSWORD))[0] == 401
    assert (await login(client, B, new))[0] == 200

    status, body = await call(client, token, "POST", f"/api/admin/users/{bob}/reset-password", WHY)
    generated = body["generatedPassword"]
    assert status == 200 and len(generated) == manage.GENERATED_LENGTH, body
    assert (await login(client, B, new))[0] == 401
    assert (await login(client, B, generated))[0] == 200
    stored = await pool.fetchval("SELECT password_hash FROM admin_users WHERE user_id = $1", bob)
    resets = await events(pool, "AdminPasswordReset")
    assert [e["data"]["generated"] for e in resets] == [False, True]
    for e in resets:
        assert new not in e["text"] and generated not in e["text"] and stored not in e["text"]
    problem(await call(client, token, "POST", f"/api/admin/users/{B}/reset-password",
                       {"password": "short", **WHY}), 400, "VALIDATION_FAILED")
    assert (await login(client, B, generated))[0] == 200  # the refused reset changed nothing


async def test_unlock_clears_the_throttle_by_email_or_by_address(pool: asyncpg.Pool, client: Client) -> None:
    token, _ = await alice_and_bob(pool, client)
    for _ in range(throttle.MAX_FAILURES_PER_EMAIL):
        assert (await login(client, B, "not the password"))[0] == 401
    assert (await login(client, B))[0] == 429
    status, body = await call(client, token, "POST", "/api/admin/login-throttle/unlock", {"email": B.upper(), **WHY})
    assert (status, body) == (200, {"email": B, "address": None, "cleared": throttle.MAX_FAILURES_PER_EMAIL})
    assert (await login(client, B))[0] == 200

    for _ in range(throttle.MAX_FAILURES_PER_EMAIL):
        assert (await login(client, B, "not the password"))[0] == 401
    status, body = await call(client, token, "POST", "/api/admin/login-throttle/unlock",
                              {"address": "::ffff:127.0.0.1", "email": "other@example.com", **WHY})
    assert (status, body["address"], body["cleared"]) == (200, "127.0.0.1", 0)  # both must match
    assert (await login(client, B))[0] == 429
    status, body = await call(client, token, "POST", "/api/admin/login-throttle/unlock",
                              {"address": "127.0.0.1", **WHY})
    assert (status, body["cleared"]) == (200, throttle.MAX_FAILURES_PER_EMAIL)
    assert (await login(client, B))[0] == 200
    unlocked = await events(pool, "LoginThrottleUnlocked")
    assert [e["data"] for e in unlocked] == [{"email": B, "address": None, "cleared": 5},
                                             {"email": "other@example.com", "address": "127.0.0.1", "cleared": 0},
                                             {"email": None, "address": "127.0.0.1", "cleared": 5}]
    assert all(e["metadata"]["actor"] == f"admin:{A}" for e in unlocked)


async def test_unknown_users_are_404_and_bad_input_is_4xx_problem_json(pool: asyncpg.Pool, client: Client) -> None:
    token, _ = await alice_and_bob(pool, client)
    for action, body in (("disable", WHY), ("enable", WHY), ("role", {"role": "ops_viewer", **WHY}),
                         ("reset-password", WHY)):
        for ref in ("nobody@example.com", "usr_" + "0" * 32):
            problem(await call(client, token, "POST", f"/api/admin/users/{ref}/{action}", body), 404, "NOT_FOUND")
        for ref in ("not-an-email", "a%00b@example.com", "x@y%0a", "%ED%A0%80@example.com"):
            resp = await client.post(f"/api/admin/users/{ref}/{action}", headers=bearer(token), json=body)
            # invalid UTF-8 stays percent-encoded in the path: a printable name that matches nobody (404)
            expected = 404 if ref.startswith("%ED") else 400
            assert resp.status == expected and resp.content_type == "application/problem+json", (ref, resp.status)
    bad_bodies: list[Any] = [None, {}, {"reason": ""}, {"reason": "   "}, {"reason": 5}, {"reason": "x", "extra": 1},
                             {"reason": "x" * 1001}, ["reason"]]
    for body in bad_bodies:
        problem(await call(client, token, "POST", f"/api/admin/users/{B}/disable", body), 400, "VALIDATION_FAILED")
    for role in ("root", "", None, "PLATFORM_ADMIN"):
        problem(await call(client, token, "POST", f"/api/admin/users/{B}/role", {"role": role, **WHY}), 400,
                "VALIDATION_FAILED")
    resp = await client.post(f"/api/admin/users/{B}/disable", headers=bearer(token), data=b"{not json")
    assert resp.status == 400
    for body in ({**WHY}, {"email": "nope", **WHY}, {"address": "300.1.1.1", **WHY}, {"address": "x" * 65, **WHY},
                 {"email": B}):
        problem(await call(client, token, "POST", "/api/admin/login-throttle/unlock", body), 400, "VALIDATION_FAILED")
    assert await pool.fetchval("SELECT count(*) FROM events WHERE event_type <> 'AdminUserCreated'") == 0
    assert await pool.fetchval("SELECT bool_and(NOT disabled) FROM admin_users")


async def test_the_console_cookie_needs_its_csrf_token_for_a_change(pool: asyncpg.Pool, client: Client) -> None:
    token, _ = await alice_and_bob(pool, client)
    cookies = {SESSION_COOKIE: token}
    resp = await client.post(f"/api/admin/users/{B}/disable", json=WHY, cookies=cookies)
    assert (resp.status, (await resp.json())["code"]) == (403, "FORBIDDEN")
    assert await pool.fetchval("SELECT disabled FROM admin_users WHERE email = $1", B) is False
    resp = await client.post(f"/api/admin/users/{B}/disable", json=WHY, cookies=cookies,
                             headers={CSRF_HEADER: csrf_for(token)})
    assert resp.status == 200
    assert (await client.get("/api/admin/users", cookies=cookies)).status == 200


async def test_concurrent_changes_of_one_user_keep_its_stream_in_commit_order(pool: asyncpg.Pool) -> None:
    """Lock before you write: every change of one user (disable, enable, reset, revoke) and every throttle
    unlock takes its stream's lock before its transaction's first write, so the stream's versions read
    in (tx, seq) order, as replay and export read them, are 1..n with no gap (a change that wrote its row
    first and locked the stream after could land at a lower transaction id than a later version)."""
    store = EventStore(pool)
    await make_user(pool, A)
    bob = await make_user(pool, B)
    meta = Meta(actor=f"admin:{A}", reason="race")
    for i in range(8):
        await asyncio.gather(
            manage.reset_password(store, B, None, meta=meta),
            manage.set_disabled(store, B, i % 2 == 0, actor_email=A, meta=meta),
            users.revoke_sessions(store, B, meta=meta),
            throttle.unlock(store, B, None, meta=meta),
            throttle.unlock(store, None, "10.0.0.1", meta=meta),
        )
    for stream_id in (users.stream(bob), throttle.UNLOCK_STREAM):
        versions = [r["stream_version"] for r in await pool.fetch(
            "SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY tx, seq", stream_id)]
        assert versions == list(range(1, len(versions) + 1)), (stream_id, versions)
