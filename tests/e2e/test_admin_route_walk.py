"""Walk EVERY /api/admin/** route of the real app's router against one real `periodya serve` process and
check the Authentication rules of API.md for each, with every kind of credential:

* no token, a garbage token, a non-Bearer scheme, the service token, an expired session, a revoked
  (logged-out) session -> 401 UNAUTHENTICATED;
* a live session of a user without platform_admin -> 403 FORBIDDEN;
* the cron secret -> accepted on POST and GET /api/admin/ops/run/*, 401 everywhere else;
* a live platform_admin session -> accepted, except on GET /api/admin/ops/run/*, which takes the cron
  secret only (403: a GET never changes state for a session);
* accepted means the handler's real answer, pinned per route (`ANSWERS`): the paths name an escrow,
  payee account, payouts and an alert that exist (seeded before the server starts), so a 500 or a 404
  from the handler fails the walk.
Every 401/403 is application/problem+json with the right `code` (HEAD: status and content type only).

The route list comes from create_app(...).router.routes(), so a route added later is walked too.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import asyncpg
import pytest
from yarl import URL

from periodya import db
from periodya.config import Settings
from periodya.domain import alerts, escrow, payout
from periodya.eventstore import EventStore
from periodya.handlers import alerts as alert_handlers
from periodya.handlers import lifecycle, platform
from periodya.handlers.unit_of_work import Meta, run_command
from periodya.http.app import create_app
from periodya.runners import JOBS
from tests.conftest import CRON_SECRET, SERVICE_TOKEN, database_name
from tests.e2e.procs import PROBLEM, base_env, create_user, fresh_database, start_server

RUN_PREFIX = "/api/admin/ops/run/"
PLACEHOLDER = re.compile(r"\{(\w+)\}")
ALERT = ("OUTBOX_STUCK", "payout:walk-rerun-outbox")
ALERT_ID = alerts.alert_id(*ALERT, 1)
TARGET = "walk-target@example.com"  # the user the user-management routes change (not one the walk logs in as)
SEED_META = Meta(actor="test:walk")


def admin_routes() -> list[tuple[str, str]]:
    """(method, concrete path) for every /api/admin/** route; {job} is expanded to every job."""
    app = create_app(Settings.from_env({}), None)  # routes only: no pool needed
    found: list[tuple[str, str]] = []
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if not canonical.startswith("/api/admin/"):
            continue
        if "{job}" in canonical:
            found += [(route.method, canonical.replace("{job}", job)) for job in JOBS]
        else:
            found.append((route.method, PLACEHOLDER.sub(lambda m: f"walk-{m.group(1)}", canonical)))
    return sorted(set(found))


def concrete(path: str) -> str:
    """The walked path with ids that exist: each payout command acts on a payout of its own."""
    if path.startswith("/api/admin/ops/payouts/walk-id/"):
        return path.replace("walk-id", "walk-" + path.rsplit("/", 1)[1])
    if path == "/api/admin/payouts/walk-id":
        return "/api/admin/payouts/walk-rerun-outbox"
    return (path.replace("walk-alert_id", ALERT_ID).replace("walk-user", TARGET)
            .replace("walk-account", "payable:walk-payee")
            .replace("walk-escrow_id", "walk-escrow").replace("walk-payout_id", "walk-rerun-outbox"))


def body_for(path: str) -> dict[str, Any]:
    if path.endswith("/role"):
        return {"role": "ops_viewer", "reason": "route walk"}
    if path.endswith("/unlock"):
        return {"email": TARGET, "reason": "route walk"}
    if path.startswith("/api/admin/users/"):
        return {"reason": "route walk"}
    if path.endswith(("/quarantine", "/cancel")):
        return {"reason": "route walk"}
    if path.endswith(("/ack", "/resolve")):
        return {"note": "route walk"}
    return {}


def status_of(body: Any) -> Any:
    return body.get("status") if isinstance(body, dict) else None


# (method, walked path) -> (HTTP status, a check of the body) for the admin (and the cron secret on run/).
# The payouts: walk-{command} for each command, REQUESTED (cancel's is QUARANTINED, never sent); no
# provider is configured, so the run endpoints' provider calls fail (counted in the summary, still 200).
ANSWERS: dict[tuple[str, str], tuple[int, Any]] = {
    ("GET", "/api/admin/audit/accounts/walk-account"): (200, lambda b: "payable:walk-payee" in str(b)),
    ("GET", "/api/admin/audit/escrows/walk-escrow_id"): (200, lambda b: "walk-escrow" in str(b)),
    ("GET", "/api/admin/audit/payouts/walk-payout_id"): (200, lambda b: "walk-rerun-outbox" in str(b)),
    ("GET", "/api/admin/ops/alerts"): (200, lambda b: ALERT_ID in str(b)),
    ("GET", "/api/admin/ops/health"): (200, lambda b: b["status"] in ("ok", "degraded", "critical")),
    ("POST", "/api/admin/ops/alerts/walk-alert_id/ack"): (200, lambda b: b["alertId"] == ALERT_ID),
    ("POST", "/api/admin/ops/alerts/walk-alert_id/resolve"): (200, lambda b: status_of(b) == "RESOLVED"),
    ("POST", "/api/admin/ops/payouts/walk-id/cancel"): (200, lambda b: status_of(b) == "CANCELLED"),
    ("POST", "/api/admin/ops/payouts/walk-id/force-finalize"): (409, lambda b: b["code"] == "INVALID_STATE"),
    ("POST", "/api/admin/ops/payouts/walk-id/force-reconcile"): (409, lambda b: b["code"] == "INVALID_STATE"),
    ("POST", "/api/admin/ops/payouts/walk-id/quarantine"): (200, lambda b: status_of(b) == "QUARANTINED"),
    ("POST", "/api/admin/ops/payouts/walk-id/rerun-outbox"): (200, lambda b: status_of(b) == "REQUESTED"),
    **{(m, f"{RUN_PREFIX}{job}"): (200, lambda b, job=job: b["job"].split(":")[0] == job)
       for job in JOBS for m in ("POST", "GET")},  # GET: the cron secret only
    ("GET", "/api/admin/jobs"): (200, lambda b: isinstance(b, dict | list)),
    ("GET", "/api/admin/users"): (200, lambda b: TARGET in str(b) and "walk-admin@example.com" in str(b)),
    **{("POST", f"/api/admin/users/walk-user/{act}"): (200, lambda b: TARGET in str(b["user"]))
       for act in ("disable", "enable", "role")},
    ("POST", "/api/admin/users/walk-user/reset-password"): (200, lambda b: len(b["generatedPassword"]) == 24),
    ("POST", "/api/admin/login-throttle/unlock"): (200, lambda b: b["email"] == TARGET and "cleared" in b),
    ("GET", "/api/admin/payouts"): (200, lambda b: "walk-rerun-outbox" in str(b)),
    ("GET", "/api/admin/payouts/walk-id"): (200, lambda b: "walk-rerun-outbox" in str(b)),
    **{("HEAD", p): (200, None) for p in ("/api/admin/jobs", "/api/admin/payouts", "/api/admin/users",
                                          "/api/admin/payouts/walk-id",
                                          "/api/admin/audit/accounts/walk-account",
                                          "/api/admin/audit/escrows/walk-escrow_id",
                                          "/api/admin/audit/payouts/walk-payout_id", "/api/admin/ops/alerts",
                                          "/api/admin/ops/health")},
}


async def seed(database_url: str) -> None:
    """An escrow released to walk-payee, one REQUESTED payout per payout command (cancel's quarantined),
    and an open alert."""
    pool = await db.connect_pool(database_url, min_size=1, max_size=2)
    try:
        store = EventStore(pool)
        await run_command(store, SEED_META, lambda u: platform.fund_escrow(
            u, escrow.FundEscrow("walk-escrow", 100_000, "USD")))
        await run_command(store, SEED_META, lambda u: platform.release_escrow(
            u, escrow.ReleaseEscrow("walk-escrow", "walk-payee", 50_000, 100)))
        for cmd in ("cancel", "force-finalize", "force-reconcile", "quarantine", "rerun-outbox"):
            req = payout.RequestPayout(f"walk-{cmd}", "walk-payee", 1_000, "USD", "ba_walk")
            await run_command(store, SEED_META, partial(platform.request_payout, cmd=req))
        await run_command(store, SEED_META, lambda u: lifecycle.quarantine(u, "walk-cancel", "to be cancelled"))
        await run_command(store, SEED_META, lambda u: alert_handlers.raise_alert(
            u, *ALERT[:1], "warning", ALERT[1], {"payoutId": "walk-rerun-outbox"}, "route walk"))
    finally:
        await pool.close()


ROUTES = admin_routes()
CASES = ("none", "garbage", "basic-scheme", "service-token", "expired", "revoked", "no-role", "cron", "admin")


@dataclass(frozen=True)
class Walk:
    api: str
    tokens: dict[str, str | None]
    http: aiohttp.ClientSession

    def header(self, case: str) -> dict[str, str]:
        if case == "none":
            return {}
        if case == "basic-scheme":
            return {"Authorization": f"Basic {self.tokens['admin']}"}
        return {"Authorization": f"Bearer {self.tokens[case]}"}

    async def request(self, method: str, path: str, case: str,
                      payload: dict[str, Any] | None = None) -> tuple[int, str, Any]:
        async with self.http.request(method, URL(self.api + path, encoded=True), headers=self.header(case),
                                     json=(payload or {}) if method == "POST" else None) as r:
            text = await r.text()
            body = r.content_type.endswith("json") and text and await r.json(content_type=None)
            return r.status, r.content_type, body or text


@pytest.fixture(scope="module")
async def walk_database(server_url: str, template_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url, database_name(template_url), "walk") as url:
        yield url


@pytest.fixture(scope="module")
async def walk(walk_database: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Walk]:
    """One server (no provider configured: the run endpoints still run, on an empty database), an admin,
    a user without the role, and one session in each state."""
    log_dir = tmp_path_factory.mktemp("walk")
    await seed(walk_database)
    env = base_env(walk_database)
    server, api = await start_server(env, log_dir)
    try:
        password = "walk password 0123456789"
        await create_user(env, log_dir, "walk-admin@example.com", password)
        await create_user(env, log_dir, "walk-support@example.com", password, roles=("support",))
        await create_user(env, log_dir, TARGET, password)
        async with aiohttp.ClientSession() as http:
            async def login(email: str) -> str:
                async with http.post(f"{api}/api/auth/login", json={"email": email, "password": password}) as r:
                    assert r.status == 200, await r.text()
                    return (await r.json())["token"]  # type: ignore[no-any-return]

            tokens: dict[str, str | None] = {
                "admin": await login("walk-admin@example.com"), "no-role": await login("walk-support@example.com"),
                "expired": await login("walk-admin@example.com"), "revoked": await login("walk-admin@example.com"),
                "garbage": "garbage-" + uuid.uuid4().hex, "service-token": SERVICE_TOKEN, "cron": CRON_SECRET}
            async with http.post(f"{api}/api/auth/logout",
                                 headers={"Authorization": f"Bearer {tokens['revoked']}"}) as r:
                assert r.status == 204, await r.text()
            conn = await asyncpg.connect(walk_database)
            try:
                expired = await conn.execute(
                    "UPDATE periodya.admin_sessions SET expires_at = now() - interval '1 second' "
                    "WHERE token_hash = $1", hashlib.sha256(str(tokens["expired"]).encode()).digest())
                assert expired == "UPDATE 1"
            finally:
                await conn.close()
            yield Walk(api, tokens, http)
    finally:
        await server.stop()


def expected(method: str, path: str, case: str) -> tuple[int, str] | str:
    """(status, code) for a refusal, or "accepted" (the handler answers: see ANSWERS)."""
    run = path.startswith(RUN_PREFIX)
    if case == "admin" and run and method == "GET":
        return 403, "FORBIDDEN"
    if case == "admin" or (case == "cron" and method in ("POST", "GET") and run):
        return "accepted"
    if case == "no-role":
        return 403, "FORBIDDEN"
    return 401, "UNAUTHENTICATED"


def test_every_walked_route_has_a_pinned_answer() -> None:
    assert sorted(ANSWERS) == ROUTES


def test_the_walk_covers_the_ops_api() -> None:
    """Not vacuous: every admin route API.md names is in the router's list."""
    paths = {(m, p) for m, p in ROUTES}
    for job in ("outbox", "webhooks", "reconcile-pull", "repair", "sentinel"):
        assert ("POST", f"{RUN_PREFIX}{job}") in paths and ("GET", f"{RUN_PREFIX}{job}") in paths
    for method, path in [("GET", "/api/admin/ops/health"), ("GET", "/api/admin/ops/alerts"),
                         ("POST", "/api/admin/ops/alerts/walk-alert_id/ack"),
                         ("POST", "/api/admin/ops/alerts/walk-alert_id/resolve")] + [
            ("POST", f"/api/admin/ops/payouts/walk-id/{cmd}")
            for cmd in ("rerun-outbox", "force-reconcile", "force-finalize", "quarantine", "cancel")]:
        assert (method, path) in paths, (method, path)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_admin_route_auth(walk: Walk, method: str, path: str) -> None:
    seen: dict[str, Any] = {}
    wanted: dict[str, Any] = {}
    answer_status, check = ANSWERS[(method, path)]
    for case in CASES:
        status, content_type, body = await walk.request(method, concrete(path), case, body_for(path))
        want = expected(method, path, case)
        wanted[case] = want
        if want == "accepted":
            ok = status == answer_status and (check is None or check(body))
            seen[case] = "accepted" if ok else (status, body)
            continue
        seen[case] = (status, body.get("code") if isinstance(body, dict) else None)
        if method == "HEAD":  # no body on HEAD: the status and the content type must still be right
            seen[case] = (status, want[1]) if content_type == PROBLEM else (status, content_type)
            continue
        assert content_type == PROBLEM, (case, status, content_type, body)
        assert body["status"] == status and body["type"] and body["title"] and body["detail"], (case, body)
    assert seen == wanted


@pytest.mark.parametrize("path", [
    "/api/admin/ops/run/../alerts/walk-alert/resolve",
    "/api/admin/ops/run/%2e%2e/alerts/walk-alert/resolve",
    "/api/admin/ops/run/..%2falerts/walk-alert/resolve",
    "/api/admin/ops/run/outbox/../../health",
])
async def test_cron_secret_cannot_reach_other_routes_through_the_run_prefix(walk: Walk, path: str) -> None:
    """Auth checks the path prefix; the router must not resolve a run/ path to another admin route."""
    status, _, body = await walk.request("POST", path, "cron")
    assert status in (401, 404, 405), (status, body)
    status, _, body = await walk.request("GET", path, "cron")
    assert status in (401, 404, 405), (status, body)


async def test_cron_secret_only_on_post_and_get(walk: Walk) -> None:
    for job in JOBS:
        for method in ("PUT", "DELETE", "PATCH"):
            status, content_type, body = await walk.request(method, f"{RUN_PREFIX}{job}", "cron")
            assert (status, content_type, body["code"]) == (401, PROBLEM, "UNAUTHENTICATED"), (method, job, body)


async def test_double_slash_is_not_an_unauthenticated_way_in(walk: Walk) -> None:
    for path in ("//api/admin/ops/health", "/api//admin/ops/health", "/API/admin/ops/health"):
        status, _, body = await walk.request("GET", path, "none")
        assert status in (401, 404), (path, status, body)
