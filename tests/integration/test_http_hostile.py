"""Hostile input over real HTTP (issue 13 items 1, 2, 3, 6; issue 11 defect 6;
defect 3, an unknown escrow's 404, is in test_http_platform.py): every answer is a
4xx problem+json, nothing is written, and a signed but unreadable provider event is stored and flagged.

Raw requests go over a plain socket where the client library would tidy the bytes (non-UTF-8 headers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from periodya.admin import users
from periodya.deps import Deps
from periodya.eventstore import EventStore
from periodya.handlers.health import health
from periodya.handlers.unit_of_work import Meta
from periodya.http.app import NoProvider, create_app
from periodya.http.edge import EdgeRunner
from periodya.provider.signing import sign
from periodya.runners import sentinel, webhooks
from tests.clients import Client
from tests.conftest import CRON_SECRET, SERVICE_TOKEN

SECRET = "whsec_hostile_test"
PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"
DEEP = b"[" * 800 + b"]" * 800


class EdgeServer(TestServer):
    """A TestServer served as `periodya serve` serves the app: through the edge's runner."""

    async def _make_runner(self, **kwargs: Any) -> EdgeRunner:
        return EdgeRunner(self.app, **kwargs)


@pytest.fixture
async def client(settings: Any, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    http = TestClient(EdgeServer(create_app(settings.with_overrides(webhook_secret=SECRET), pool)))
    await http.start_server()
    yield http
    await http.close()


async def raw(client: Client, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send raw bytes (Connection: close) and parse the answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, orjson.loads(body) if body else None


def request(method: str, path: str, *, auth: bytes | None = None, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n".encode()
    if auth is not None:
        head += b"Authorization: Bearer " + auth + b"\r\n"
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


async def admin_token(client: Client, pool: asyncpg.Pool) -> str:
    await users.create_user(EventStore(pool), "ops@example.com", PASSWORD, ("platform_admin",), meta=Meta("test"))
    r = await client.post("/api/auth/login", json={"email": "ops@example.com", "password": PASSWORD})
    assert r.status == 200, await r.text()
    return str((await r.json())["token"])


def assert_problem(status: int, headers: dict[str, str], body: Any, expected: int, code: str) -> None:
    assert (status, body["code"]) == (expected, code), body
    assert headers["content-type"].startswith(PROBLEM) and body["requestId"]


# --- issue 13.1: deep JSON is a 400 before anything runs, the login throttle included --------------------

async def test_deeply_nested_json_is_refused_before_the_login_throttle(client: Client, pool: asyncpg.Pool) -> None:
    for _ in range(3):
        answer = await raw(client, request("POST", "/api/auth/login", body=b'{"email":' + DEEP + b',"password":"x"}'))
        assert_problem(*answer, 400, "VALIDATION_FAILED")
        assert "deeper than" in answer[2]["detail"]
    assert await pool.fetchval("SELECT count(*) FROM login_failures") == 0  # the throttle was never charged
    answer = await raw(client, request("POST", "/api/escrows", auth=SERVICE_TOKEN.encode(),
                                       body=b'{"escrowId":' + DEEP + b',"amount":1,"currency":"USD"}'))
    assert_problem(*answer, 400, "VALIDATION_FAILED")
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE 'escrow-%'") == 0


# --- issue 13.2: non-UTF-8 bytes in Authorization -----------------------------------------------------

@pytest.mark.parametrize("path", ["/api/payees/p1/balances", "/api/admin/ops/health", "/api/auth/logout"])
async def test_a_non_utf8_bearer_token_is_401(client: Client, path: str) -> None:
    method = "POST" if path.endswith("logout") else "GET"
    answer = await raw(client, request(method, path, auth=b"\xff\xfe"))
    assert_problem(*answer, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize("encoding", [b"gzip", b"deflate", b"br", b"zstd"])
async def test_a_body_that_does_not_decode_as_its_content_encoding_is_400(client: Client,
                                                                           encoding: bytes) -> None:
    """Found by the fuzz (bench/fuzz.py): aiohttp raises while the handler reads such a body."""
    raw_request = request("POST", "/api/escrows", auth=SERVICE_TOKEN.encode(), body=b"{}").replace(
        b"Content-Length", b"Content-Encoding: " + encoding + b"\r\nContent-Length")
    assert_problem(*await raw(client, raw_request), 400, "BAD_REQUEST")  # read by the handler or the protocol


# --- issue 13.3: bad query values and signed but malformed webhooks -------------------------------------

async def test_bad_ops_query_values_are_422(client: Client, pool: asyncpg.Pool) -> None:
    token = (await admin_token(client, pool)).encode()
    assert_problem(*await raw(client, request("GET", "/api/admin/ops/alerts?code=%00", auth=token)),
                   422, "VALIDATION_FAILED")
    for batch in ("%C2%B2", "99999999999999999999999"):
        assert_problem(*await raw(client, request("POST", f"/api/admin/ops/run/outbox?batch={batch}",
                                                  auth=CRON_SECRET.encode())), 422, "VALIDATION_FAILED")


def signed_post(client: Client, event: dict[str, Any], *, secret: str = SECRET) -> Any:
    body = orjson.dumps(event)
    return client.post("/api/webhooks/provider", data=body,
                       headers={"Stripe-Signature": sign(body, secret, int(time.time()))})


def payout_event(event_id: str, **changes: Any) -> dict[str, Any]:
    obj = {"id": "po_1", "object": "payout", "amount": 100, "currency": "usd", "status": "paid",
           "metadata": {"payout_id": "pay_1"}}
    event = {"id": event_id, "type": "payout.paid", "created": int(time.time()), "data": {"object": obj}}
    for key, value in changes.items():
        (obj if key in obj else event)[key] = value
    return event


MALFORMED = {
    "nul-in-id": payout_event("evt_\x00nul"),
    "nul-in-currency": payout_event("evt_cur", currency="us\x00d"),
    "created-object": payout_event("evt_created", created={"at": 1}),
    "created-object-other-type": {**payout_event("evt_created2", created={"at": 1}), "type": "balance.available"},
    "payout-id-list": payout_event("evt_list", metadata={"payout_id": ["pay_1", "pay_2"]}),
    "newline-in-id": payout_event("evt_\nnl"),
    "huge-amount": payout_event("evt_amount", amount=2**63),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_signed_malformed_event_is_stored_and_flagged(client: Client, pool: asyncpg.Pool,
                                                             settings: Any, case: str) -> None:
    event = MALFORMED[case]
    answers = []
    for _ in range(2):  # the provider's redelivery is a duplicate, not a second alert
        r = await signed_post(client, event)
        answers.append((r.status, await r.json()))
    assert answers == [(200, {"received": True, "duplicate": False}), (200, {"received": True, "duplicate": True})]
    [row] = await pool.fetch("SELECT event_id, type, payout_id FROM provider_events")
    assert row["type"] == "unprocessable" and row["payout_id"] is None
    [alert] = await pool.fetch("SELECT code, subject, status, details FROM alerts")
    assert (alert["code"], alert["subject"], alert["status"]) == ("PROVIDER_EVENT_UNPROCESSABLE", row["event_id"],
                                                                  "OPEN")
    assert alert["details"]["problem"]
    # the webhooks job marks it applied, acting on nothing, and does not fail on it
    deps = Deps(EventStore(pool), NoProvider(), settings)
    summary = (await webhooks.run(deps)).as_json()
    assert summary["processed"] == 1, summary
    assert await pool.fetchval("SELECT outcome FROM provider_events") == "unprocessable"
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE 'payout-%'") == 0


# --- issue 13.6: headers ------------------------------------------------------------------------------

async def test_every_answer_has_neutral_and_no_sniff_headers_and_login_is_not_cached(
        client: Client, pool: asyncpg.Pool) -> None:
    await users.create_user(EventStore(pool), "ops@example.com", PASSWORD, ("platform_admin",), meta=Meta("test"))
    r = await client.post("/api/auth/login", json={"email": "ops@example.com", "password": PASSWORD})
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    for answer in (r, await client.get("/livez"), await client.get("/api/payees/p1/balances"),
                   await client.get("/nowhere")):
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Server"] == "periodya", answer.headers["Server"]


# --- issue 11.6: refused webhooks are counted in health and alerted on while they persist ----------------

async def test_refused_webhooks_are_counted_and_alerted_while_they_persist(
        client: Client, pool: asyncpg.Pool, settings: Any) -> None:
    for secret in ("whsec_wrong", "whsec_wrong"):
        r = await signed_post(client, payout_event("evt_forged"), secret=secret)
        assert r.status == 400 and r.content_type == PROBLEM
    assert await pool.fetchval("SELECT count(*) FROM provider_events") == 0
    deps = Deps(EventStore(pool), NoProvider(), settings)
    assert (await health(deps))["webhooksRefused"] == 2

    async def sentinel_alerts(at_minutes: float) -> list[Any]:
        later = Deps(deps.store, deps.provider, settings, clock=lambda: deps.clock() + timedelta(minutes=at_minutes))
        await sentinel.run(later)
        return list(await pool.fetch("SELECT status, details FROM alerts WHERE code = 'WEBHOOK_SIGNATURES_FAILING'"))

    assert await sentinel_alerts(0) == []  # one minute of refusals is noise, not "persisting"
    await pool.execute("INSERT INTO webhook_refusals (minute, refused, last_reason) VALUES "
                       "(date_trunc('minute', now()) - interval '2 minutes', 4, 'timestamp_too_old'), "
                       "(date_trunc('minute', now()) - interval '5 minutes', 1, 'timestamp_too_old')")
    [alert] = await sentinel_alerts(0)
    assert alert["status"] == "OPEN" and alert["details"]["refusedLast15m"] == 7, alert
    [alert] = await sentinel_alerts(30)  # half an hour later, no refusal since: resolved by itself
    assert alert["status"] == "RESOLVED"
