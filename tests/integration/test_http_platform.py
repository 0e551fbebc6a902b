"""HTTP contract of the platform command API (API.md, "Platform command API"), end to end.

Every test talks to a REAL aiohttp server on a loopback port (the `api` fixture) backed by a real
PostgreSQL database created for that test; nothing is mocked. What the platform backend relies on:

* success shapes (camelCase fields, integer amounts, RFC 3339 UTC timestamps ending in Z);
* 401 UNAUTHENTICATED (+ WWW-Authenticate) for a missing, wrong or non-Bearer credential;
* 400/422 VALIDATION_FAILED for bad bodies and ids, 404 NOT_FOUND, 409 INVALID_STATE /
  INSUFFICIENT_FUNDS / IDEMPOTENCY_KEY_REUSED, always problem+json, never a stack trace;
* a refused command changes nothing;
* Idempotency-Key semantics, including 20 concurrent requests under one key;
* 32 concurrent payouts racing for a balance that covers exactly 10 of them;
* a hypothesis fuzz of every POST route (bodies and path ids): never a 5xx, every 4xx is problem+json;
* X-Request-Id echo and `requestId` in problem bodies.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.clients import Client
from tests.conftest import SERVICE_TOKEN

PROBLEM = "application/problem+json"
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
ESCROW_FIELDS = {"escrowId", "currency", "funded", "released", "refunded", "balance"}
PAYOUT_FIELDS = {"payoutId", "payeeId", "amount", "currency", "destination", "status", "providerPayoutId",
                 "ledgerFinalized", "quarantineReason", "outbox", "createdAt", "updatedAt"}
OUTBOX_FIELDS = {"status", "attempts", "lastError", "nextAttemptAt"}
PAYOUT_STATUSES = {"REQUESTED", "SENDING", "SENT", "PAID", "FINALIZED", "FAILED", "QUARANTINED", "CANCELLED"}
EVENT_FIELDS = {"position", "type", "data", "metadata", "recordedAt"}
TRACE_MARKERS = ("Traceback", 'File "', "asyncpg.", "pydantic_core")


# --- helpers ----------------------------------------------------------------------------------------

def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def ok(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == status, (resp.status, text)
    assert resp.content_type == "application/json", resp.content_type
    body = json.loads(text)
    assert isinstance(body, dict)
    return body


async def problem(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem with the given status and code; return its body."""
    text = await resp.text()
    assert resp.status == status, (resp.status, text)
    assert_problem_shape(resp, text)
    body: dict[str, Any] = json.loads(text)
    assert body["code"] == code, body
    return body


def assert_problem_shape(resp: aiohttp.ClientResponse, text: str) -> None:
    assert resp.content_type == PROBLEM, (resp.status, resp.content_type, text)
    body = json.loads(text)
    assert isinstance(body, dict), text
    for name in ("type", "title", "detail", "code"):
        assert isinstance(body.get(name), str) and body[name], (name, body)
    assert body["status"] == resp.status and is_int(body["status"]), body
    assert re.fullmatch(r"[A-Z][A-Z_]+", body["code"]), body
    assert isinstance(body.get("requestId"), str) and body["requestId"] == resp.headers.get("X-Request-Id"), body
    for marker in TRACE_MARKERS:
        assert marker not in text, text
    if resp.status == 401:
        assert resp.headers.get("WWW-Authenticate", "").lower().startswith("bearer"), dict(resp.headers)


def assert_timestamp(value: object) -> None:
    assert isinstance(value, str) and RFC3339_Z.match(value), value


def assert_escrow_shape(body: dict[str, Any]) -> None:
    assert set(body) >= ESCROW_FIELDS, body
    assert isinstance(body["escrowId"], str) and isinstance(body["currency"], str)
    for name in ("funded", "released", "refunded", "balance"):
        assert is_int(body[name]) and body[name] >= 0, (name, body)
    assert body["balance"] == body["funded"] - body["released"] - body["refunded"], body
    for name in ("createdAt", "updatedAt"):  # extensions, but if present they follow the conventions
        if name in body:
            assert_timestamp(body[name])


def assert_payout_shape(body: dict[str, Any]) -> None:
    assert set(body) >= PAYOUT_FIELDS, sorted(PAYOUT_FIELDS - set(body))
    assert isinstance(body["payoutId"], str) and body["payoutId"]
    assert isinstance(body["payeeId"], str) and isinstance(body["destination"], str)
    assert is_int(body["amount"]) and body["amount"] > 0
    assert isinstance(body["currency"], str) and re.fullmatch(r"[A-Z]{3}", body["currency"])
    assert body["status"] in PAYOUT_STATUSES
    assert body["providerPayoutId"] is None or isinstance(body["providerPayoutId"], str)
    assert isinstance(body["ledgerFinalized"], bool)
    assert body["quarantineReason"] is None or isinstance(body["quarantineReason"], str)
    assert isinstance(body["outbox"], dict) and set(body["outbox"]) >= OUTBOX_FIELDS, body["outbox"]
    assert body["outbox"]["attempts"] is None or is_int(body["outbox"]["attempts"])
    if body["outbox"]["nextAttemptAt"] is not None:
        assert_timestamp(body["outbox"]["nextAttemptAt"])
    assert_timestamp(body["createdAt"])
    assert_timestamp(body["updatedAt"])


async def fund(api: Client, escrow_id: str, amount: int, currency: str = "USD") -> dict[str, Any]:
    resp = await api.post("/api/escrows", json={"escrowId": escrow_id, "amount": amount, "currency": currency})
    return await ok(resp, 201)


async def credit(api: Client, payee_id: str, amount: int, currency: str = "USD", fee: int = 0) -> str:
    """Give a payee `amount` available: fund an escrow and release it all to them."""
    escrow_id = uid("esc_")
    await fund(api, escrow_id, amount + fee, currency)
    resp = await api.post(f"/api/escrows/{escrow_id}/release",
                          json={"payeeId": payee_id, "amount": amount, "feeAmount": fee})
    await ok(resp, 200)
    return escrow_id


async def balances(api: Client, payee_id: str) -> dict[str, tuple[int, int]]:
    body = await ok(await api.get(f"/api/payees/{payee_id}/balances"), 200)
    return {b["currency"]: (b["available"], b["inFlight"]) for b in body["balances"]}


async def get_escrow(api: Client, escrow_id: str) -> dict[str, Any]:
    return await ok(await api.get(f"/api/escrows/{escrow_id}"), 200)


def payout_body(payee_id: str, amount: int = 100, currency: str = "USD", destination: str = "ba_123") -> dict[str, Any]:
    return {"payeeId": payee_id, "amount": amount, "currency": currency, "destination": destination}


async def post_payout(api: Client, body: object, key: str | None = None,
                      headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    return await api.post("/api/payouts", json=body, headers={"Idempotency-Key": key or uid("key_"), **(headers or {})})


async def ledger_totals(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT currency, sum(balance)::bigint AS total FROM balances GROUP BY currency")
    return {r["currency"]: r["total"] for r in rows}


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM payouts) AS payouts, "
        "(SELECT count(*) FROM escrows) AS escrows, (SELECT count(*) FROM idempotency_keys) AS keys, "
        "(SELECT count(*) FROM outbox) AS outbox")
    return dict(row)


@pytest.fixture
async def raw(api: Client):  # type: ignore[no-untyped-def]
    """A client WITHOUT the service token, against the same server."""
    async with aiohttp.ClientSession(base_url=str(api.make_url("/"))) as session:
        yield session


# --- success shapes -----------------------------------------------------------------------------------

async def test_create_escrow_returns_201_and_the_escrow(api: Client) -> None:
    resp = await api.post("/api/escrows", json={"escrowId": "esc_1", "amount": 10_000, "currency": "EUR"})
    body = await ok(resp, 201)
    assert_escrow_shape(body)
    assert {k: body[k] for k in ESCROW_FIELDS} == {"escrowId": "esc_1", "currency": "EUR", "funded": 10_000,
                                                   "released": 0, "refunded": 0, "balance": 10_000}
    assert resp.headers.get("X-Request-Id")


async def test_release_moves_amount_to_payee_and_fee_to_revenue(api: Client, pool: asyncpg.Pool) -> None:
    await fund(api, "esc_r", 10_000)
    resp = await api.post("/api/escrows/esc_r/release", json={"payeeId": "payee_a", "amount": 7_000,
                                                                "feeAmount": 500})
    body = await ok(resp, 200)
    assert_escrow_shape(body)
    # "released" counts everything that left the escrow by release (amount + fee), so balance adds up.
    assert {k: body[k] for k in ESCROW_FIELDS} == {"escrowId": "esc_r", "currency": "USD", "funded": 10_000,
                                                   "released": 7_500, "refunded": 0, "balance": 2_500}
    assert await balances(api, "payee_a") == {"USD": (7_000, 0)}
    revenue = await pool.fetchval("SELECT balance FROM balances WHERE account = 'revenue:platform'")
    assert revenue == 500
    # feeAmount is optional (0)
    body = await ok(await api.post("/api/escrows/esc_r/release", json={"payeeId": "payee_b", "amount": 2_500}), 200)
    assert body["balance"] == 0 and body["released"] == 10_000
    assert await balances(api, "payee_b") == {"USD": (2_500, 0)}
    assert await ledger_totals(pool) == {"USD": 0}


async def test_refund_returns_200_and_the_escrow(api: Client, pool: asyncpg.Pool) -> None:
    await fund(api, "esc_f", 900, "JPY")
    body = await ok(await api.post("/api/escrows/esc_f/refund", json={"amount": 400}), 200)
    assert_escrow_shape(body)
    assert {k: body[k] for k in ESCROW_FIELDS} == {"escrowId": "esc_f", "currency": "JPY", "funded": 900,
                                                   "released": 0, "refunded": 400, "balance": 500}
    assert await ledger_totals(pool) == {"JPY": 0}


async def test_get_escrow_matches_the_last_command_answer(api: Client) -> None:
    await fund(api, "esc_g", 1_000)
    released = await ok(await api.post("/api/escrows/esc_g/release", json={"payeeId": "p", "amount": 100,
                                                                           "feeAmount": 10}), 200)
    got = await get_escrow(api, "esc_g")
    assert_escrow_shape(got)
    assert got == released


async def test_payee_balances_shape_per_currency(api: Client) -> None:
    await credit(api, "payee_m", 1_000, "USD")
    await credit(api, "payee_m", 250, "EUR")
    await ok(await post_payout(api, payout_body("payee_m", 300, "USD")), 201)
    body = await ok(await api.get("/api/payees/payee_m/balances"), 200)
    assert set(body) == {"payeeId", "balances"}
    assert body["payeeId"] == "payee_m"
    assert body["balances"] == [{"currency": "EUR", "available": 250, "inFlight": 0},
                                {"currency": "USD", "available": 700, "inFlight": 300}]
    for entry in body["balances"]:
        assert set(entry) == {"currency", "available", "inFlight"}
        assert is_int(entry["available"]) and is_int(entry["inFlight"])


async def test_payee_without_any_money_has_empty_balances(api: Client) -> None:
    # Payees are not registered anywhere: they exist by being paid. A payee never paid has no
    # balances yet, which is an empty list (200), not a 404 (a client may poll before the first release).
    body = await ok(await api.get("/api/payees/never_paid/balances"), 200)
    assert body == {"payeeId": "never_paid", "balances": []}


async def test_create_payout_returns_201_and_the_payout(api: Client, pool: asyncpg.Pool) -> None:
    await credit(api, "payee_p", 5_000)
    resp = await post_payout(api, payout_body("payee_p", 1_234, destination="ba_xyz"))
    body = await ok(resp, 201)
    assert_payout_shape(body)
    assert body["payeeId"] == "payee_p" and body["amount"] == 1_234 and body["currency"] == "USD"
    assert body["destination"] == "ba_xyz" and body["status"] == "REQUESTED"
    assert body["providerPayoutId"] is None and body["ledgerFinalized"] is False and body["quarantineReason"] is None
    assert body["outbox"]["status"] == "PENDING" and body["outbox"]["attempts"] == 0
    assert await balances(api, "payee_p") == {"USD": (5_000 - 1_234, 1_234)}
    assert await ledger_totals(pool) == {"USD": 0}


async def test_get_payout_and_its_events(api: Client) -> None:
    await credit(api, "payee_e", 500)
    created = await ok(await post_payout(api, payout_body("payee_e", 200)), 201)
    pid = created["payoutId"]
    got = await ok(await api.get(f"/api/payouts/{pid}"), 200)
    assert_payout_shape(got)
    assert got == created
    events = await ok(await api.get(f"/api/payouts/{pid}/events"), 200)
    assert isinstance(events["events"], list) and len(events["events"]) >= 1
    first = events["events"][0]
    for ev in events["events"]:
        assert set(ev) >= EVENT_FIELDS, ev
        assert is_int(ev["position"]) and isinstance(ev["type"], str)
        assert isinstance(ev["data"], dict) and isinstance(ev["metadata"], dict)
        assert_timestamp(ev["recordedAt"])
    assert [e["position"] for e in events["events"]] == sorted(e["position"] for e in events["events"])
    assert first["type"] == "PayoutRequested"
    assert first["data"]["payoutId"] == pid and first["data"]["amount"] == 200  # camelCase data
    assert first["metadata"]["actor"] == "service:platform"


# --- authentication -----------------------------------------------------------------------------------

ENDPOINTS = [
    ("POST", "/api/escrows"),
    ("POST", "/api/escrows/esc_auth/release"),
    ("POST", "/api/escrows/esc_auth/refund"),
    ("GET", "/api/escrows/esc_auth"),
    ("GET", "/api/payees/payee_auth/balances"),
    ("POST", "/api/payouts"),
    ("GET", "/api/payouts/pay_auth"),
    ("GET", "/api/payouts/pay_auth/events"),
]
BAD_CREDENTIALS = {
    "none": {},
    "wrong-token": {"Authorization": "Bearer not-the-service-token"},
    "token-prefix": {"Authorization": f"Bearer {SERVICE_TOKEN[:-1]}"},
    "basic-scheme": {"Authorization": f"Basic {SERVICE_TOKEN}"},
    "token-without-scheme": {"Authorization": SERVICE_TOKEN},
    "empty-bearer": {"Authorization": "Bearer "},
}


@pytest.mark.parametrize("credential", list(BAD_CREDENTIALS))
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_every_platform_route_needs_the_service_token(
        api: Client, raw: aiohttp.ClientSession, pool: asyncpg.Pool, method: str, path: str,
        credential: str) -> None:
    await fund(api, "esc_auth", 1_000)
    await credit(api, "payee_auth", 1_000)
    before = await counts(pool)
    body = {"escrowId": "esc_new", "amount": 1, "currency": "USD", "payeeId": "payee_auth"}
    headers = {**BAD_CREDENTIALS[credential], "Idempotency-Key": uid()}
    async with raw.request(method, path, json=body if method == "POST" else None, headers=headers) as resp:
        await problem(resp, 401, "UNAUTHENTICATED")
    assert await counts(pool) == before


async def test_bearer_scheme_is_case_insensitive(raw: aiohttp.ClientSession) -> None:
    async with raw.get("/api/payees/x/balances", headers={"Authorization": f"bearer {SERVICE_TOKEN}"}) as resp:
        assert resp.status == 200


async def test_unauthenticated_command_writes_nothing(api: Client, raw: aiohttp.ClientSession) -> None:
    async with raw.post("/api/escrows", json={"escrowId": "sneaky", "amount": 5, "currency": "USD"}) as resp:
        await problem(resp, 401, "UNAUTHENTICATED")
    await problem(await api.get("/api/escrows/sneaky"), 404, "NOT_FOUND")


# --- bad bodies ---------------------------------------------------------------------------------------

VALID_BODIES: dict[str, dict[str, Any]] = {
    "/api/escrows": {"escrowId": "esc_new", "amount": 100, "currency": "USD"},
    "/api/escrows/esc_v/release": {"payeeId": "payee_v", "amount": 100, "feeAmount": 5},
    "/api/escrows/esc_v/refund": {"amount": 100},
    "/api/payouts": {"payeeId": "payee_v", "amount": 100, "currency": "USD", "destination": "ba_1"},
}
ID_FIELDS = {"/api/escrows": "escrowId", "/api/escrows/esc_v/release": "payeeId", "/api/payouts": "payeeId"}


def _raw(data: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda _body: data


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda body: json.dumps({**body, field: value}).encode()


def _drop(field: str) -> Callable[[dict[str, Any]], bytes]:
    return lambda body: json.dumps({k: v for k, v in body.items() if k != field}).encode()


COMMON_BAD: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "empty-body": _raw(b""),
    "whitespace-body": _raw(b"  \n"),
    "not-json": _raw(b"{amount: 100"),
    "truncated-json": lambda body: json.dumps(body).encode()[:-1],
    "json-array": lambda body: json.dumps([body]).encode(),
    "json-string": _raw(b'"hello"'),
    "json-number": _raw(b"100"),
    "json-null": _raw(b"null"),
    "not-utf8": _raw(b'{"amount": "\xff\xfe"}'),
    "nan": lambda body: json.dumps({**body, "amount": float("nan")}).encode(),
    "deeply-nested": _raw(b"[" * 5000 + b"]" * 5000),
    "amount-string": _set("amount", "100"),
    "amount-float": _set("amount", 1.5),
    "amount-integral-float": _set("amount", 100.0),
    "amount-true": _set("amount", True),
    "amount-null": _set("amount", None),
    "amount-object": _set("amount", {"value": 100}),
    "amount-zero": _set("amount", 0),
    "amount-negative": _set("amount", -100),
    "amount-2^63": _set("amount", 2**63),
    "amount-2^64": _set("amount", 2**64),
    "missing-amount": _drop("amount"),
    "unknown-field": _set("note", "hi"),
    "snake-case-field": _set("fee_amount", 1),
}
ROUTE_BAD: dict[str, dict[str, Callable[[dict[str, Any]], bytes]]] = {
    "/api/escrows": {
        "missing-escrowId": _drop("escrowId"), "missing-currency": _drop("currency"),
        "currency-lower": _set("currency", "usd"), "currency-long": _set("currency", "USDX"),
        "currency-number": _set("currency", 840), "escrowId-number": _set("escrowId", 12),
    },
    "/api/escrows/esc_v/release": {
        "missing-payeeId": _drop("payeeId"), "fee-negative": _set("feeAmount", -1),
        "fee-string": _set("feeAmount", "5"), "fee-float": _set("feeAmount", 0.5),
        "payeeId-null": _set("payeeId", None),
    },
    "/api/escrows/esc_v/refund": {"body-empty-object": _raw(b"{}")},
    "/api/payouts": {
        "missing-payeeId": _drop("payeeId"), "missing-currency": _drop("currency"),
        "missing-destination": _drop("destination"), "currency-lower": _set("currency", "usd"),
        "destination-empty": _set("destination", ""), "destination-too-long": _set("destination", "d" * 257),
        "destination-number": _set("destination", 42), "payeeId-list": _set("payeeId", ["p"]),
    },
}
for _route, _field in ID_FIELDS.items():
    ROUTE_BAD[_route] |= {
        "id-empty": _set(_field, ""), "id-too-long": _set(_field, "a" * 129), "id-with-space": _set(_field, "a b"),
        "id-with-newline": _set(_field, "ab\n"), "id-with-inner-newline": _set(_field, "a\nb"),
        "id-with-slash": _set(_field, "a/b"), "id-unicode": _set(_field, "p\u00e9"),
        "id-with-nul": _set(_field, "a\u0000"),
    }
BAD_BODY_CASES = [pytest.param(route, name, make, id=f"{route.rsplit('/', 1)[-1]}:{name}")
                  for route in VALID_BODIES for name, make in (COMMON_BAD | ROUTE_BAD[route]).items()]


async def _snapshot(api: Client, pool: asyncpg.Pool) -> tuple[object, ...]:
    return (await counts(pool), await get_escrow(api, "esc_v"), await balances(api, "payee_v"),
            await ledger_totals(pool))


@pytest.mark.parametrize(("route", "name", "make"), BAD_BODY_CASES)
async def test_bad_bodies_are_400_validation_failed_and_change_nothing(
        api: Client, pool: asyncpg.Pool, route: str, name: str, make: Callable[[dict[str, Any]], bytes]) -> None:
    await fund(api, "esc_v", 1_000)
    await credit(api, "payee_v", 1_000)
    before = await _snapshot(api, pool)
    resp = await api.post(route, data=make(VALID_BODIES[route]),
                          headers={"Content-Type": "application/json", "Idempotency-Key": uid()})
    await problem(resp, 400, "VALIDATION_FAILED")
    assert await _snapshot(api, pool) == before
    # the valid body itself is accepted, so the refusal above was about the mutation
    resp = await api.post(route, json=VALID_BODIES[route], headers={"Idempotency-Key": uid()})
    assert resp.status in (200, 201), await resp.text()


async def test_validation_problem_lists_the_offending_fields(api: Client) -> None:
    resp = await api.post("/api/escrows", json={"escrowId": "x", "amount": "1", "currency": "usd", "extra": 1})
    body = await problem(resp, 400, "VALIDATION_FAILED")
    fields = {e["field"] for e in body.get("errors", [])}
    assert {"amount", "currency", "extra"} <= fields, body


@pytest.mark.parametrize("route", ["/api/escrows", "/api/payouts"])
async def test_unknown_currency_is_422(api: Client, pool: asyncpg.Pool, route: str) -> None:
    await credit(api, "payee_v", 1_000)
    before = await counts(pool)
    body = {**VALID_BODIES[route], "currency": "XYZ"}
    await problem(await api.post(route, json=body, headers={"Idempotency-Key": uid()}), 422, "VALIDATION_FAILED")
    assert await counts(pool) == before


async def test_oversized_body_is_a_problem_not_a_crash(api: Client) -> None:
    payload = json.dumps({"escrowId": "big", "amount": 1, "currency": "USD", "pad": "x" * 400_000})
    resp = await api.post("/api/escrows", data=payload, headers={"Content-Type": "application/json"})
    assert resp.status == 413, await resp.text()
    assert_problem_shape(resp, await resp.text())


async def test_nul_in_destination_is_400(api: Client, pool: asyncpg.Pool) -> None:
    # Found by this suite: a NUL used to pass validation and reach PostgreSQL (jsonb/text cannot hold
    # U+0000: UntranslatableCharacterError in append_events) -> 500. Now refused at the door.
    await credit(api, "payee_nul", 1_000)
    before = await counts(pool)
    resp = await post_payout(api, payout_body("payee_nul", 100, destination="ba_\u0000x"))
    await problem(resp, 400, "VALIDATION_FAILED")
    assert await counts(pool) == before


# --- path ids -----------------------------------------------------------------------------------------

PATH_TEMPLATES = [
    ("POST", "/api/escrows/{}/release", {"payeeId": "p", "amount": 1}),
    ("POST", "/api/escrows/{}/refund", {"amount": 1}),
    ("GET", "/api/escrows/{}", None),
    ("GET", "/api/payees/{}/balances", None),
    ("GET", "/api/payouts/{}", None),
    ("GET", "/api/payouts/{}/events", None),
]
BAD_PATH_IDS = {"space": "a b", "too-long": "a" * 129, "unicode": "\u00e9t\u00e9", "inner-newline": "a\nb",
                "quote": "a'b", "percent": "a%b", "tab": "a\tb"}


@pytest.mark.parametrize("bad", list(BAD_PATH_IDS))
@pytest.mark.parametrize(("method", "template", "body"), PATH_TEMPLATES,
                         ids=[f"{m}:{t}" for m, t, _ in PATH_TEMPLATES])
async def test_malformed_path_ids_are_400(api: Client, method: str, template: str, body: object,
                                          bad: str) -> None:
    path = template.format(quote(BAD_PATH_IDS[bad], safe=""))
    resp = await api.request(method, path, json=body, headers={"Idempotency-Key": uid()})
    await problem(resp, 400, "VALIDATION_FAILED")


@pytest.mark.parametrize(("method", "template", "body"), PATH_TEMPLATES,
                         ids=[f"{m}:{t}" for m, t, _ in PATH_TEMPLATES])
async def test_path_id_with_trailing_newline_is_400(api: Client, method: str, template: str,
                                                    body: object) -> None:
    # Found by this suite: path ids were checked with re.match("^...$"), and Python's $ also matches before
    # a trailing newline, so "esc%0A" passed as the id "esc\n" (404/409/200 instead of 400).
    await fund(api, "esc", 100)
    resp = await api.request(method, template.format("esc%0A"), json=body, headers={"Idempotency-Key": uid()})
    await problem(resp, 400, "VALIDATION_FAILED")


# --- not found, wrong state, insufficient funds -------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/escrows/nope", "/api/payouts/nope", "/api/payouts/nope/events",
                                  "/api/payouts/pay_0123456789abcdef"])
async def test_unknown_ids_are_404(api: Client, path: str) -> None:
    await problem(await api.get(path), 404, "NOT_FOUND")


async def test_unknown_route_and_method_are_problems(api: Client) -> None:
    body = await problem(await api.get("/api/escrows/a/b/c"), 404, "NOT_FOUND")
    assert body["detail"]
    resp = await api.delete("/api/escrows/abc")
    assert resp.status == 405
    assert_problem_shape(resp, await resp.text())


async def test_funding_an_escrow_twice_is_409_invalid_state(api: Client, pool: asyncpg.Pool) -> None:
    first = await fund(api, "esc_twice", 1_000)
    before = await counts(pool)
    for body in ({"escrowId": "esc_twice", "amount": 1_000, "currency": "USD"},
                 {"escrowId": "esc_twice", "amount": 5, "currency": "EUR"}):
        await problem(await api.post("/api/escrows", json=body), 409, "INVALID_STATE")
    assert await counts(pool) == before
    assert await get_escrow(api, "esc_twice") == first


@pytest.mark.parametrize(("action", "body"), [("release", {"payeeId": "p", "amount": 1}), ("refund", {"amount": 1})])
async def test_release_or_refund_of_a_missing_escrow_is_404_not_found(
        api: Client, pool: asyncpg.Pool, action: str, body: dict[str, Any]) -> None:
    # API.md: an unknown escrow is 404 NOT_FOUND (it was 409 INVALID_STATE: issue 11, defect 3)
    before = await counts(pool)
    await problem(await api.post(f"/api/escrows/missing/{action}", json=body), 404, "NOT_FOUND")
    await problem(await api.post(f"/api/escrows/missing/{action}", json=body, headers={"Idempotency-Key": "k1"}),
                  404, "NOT_FOUND")
    assert await counts(pool) == before
    await problem(await api.get("/api/escrows/missing"), 404, "NOT_FOUND")


@pytest.mark.parametrize(("action", "body"), [
    ("release", {"payeeId": "payee_i", "amount": 1_001}),
    ("release", {"payeeId": "payee_i", "amount": 1_000, "feeAmount": 1}),   # amount + fee > balance
    ("release", {"payeeId": "payee_i", "amount": 1, "feeAmount": 1_000}),
    ("refund", {"amount": 1_001}),
])
async def test_taking_more_than_the_escrow_holds_is_409_insufficient_funds(
        api: Client, pool: asyncpg.Pool, action: str, body: dict[str, Any]) -> None:
    await fund(api, "esc_i", 1_000)
    before = (await counts(pool), await get_escrow(api, "esc_i"), await balances(api, "payee_i"))
    await problem(await api.post(f"/api/escrows/esc_i/{action}", json=body), 409, "INSUFFICIENT_FUNDS")
    assert (await counts(pool), await get_escrow(api, "esc_i"), await balances(api, "payee_i")) == before
    # exactly the balance is fine
    exact = {"payeeId": "payee_i", "amount": 990, "feeAmount": 10} if action == "release" else {"amount": 1_000}
    await ok(await api.post(f"/api/escrows/esc_i/{action}", json=exact), 200)
    assert (await get_escrow(api, "esc_i"))["balance"] == 0


async def test_partial_release_then_over_release_is_refused(api: Client, pool: asyncpg.Pool) -> None:
    await fund(api, "esc_pr", 1_000)
    await ok(await api.post("/api/escrows/esc_pr/refund", json={"amount": 600}), 200)
    before = await get_escrow(api, "esc_pr")
    await problem(await api.post("/api/escrows/esc_pr/release", json={"payeeId": "p", "amount": 401}),
                  409, "INSUFFICIENT_FUNDS")
    assert await get_escrow(api, "esc_pr") == before
    assert await ledger_totals(pool) == {"USD": 0}


@pytest.mark.parametrize(("amount", "currency"), [(1_001, "USD"), (1, "EUR"), (10**12, "USD")])
async def test_payout_over_available_is_409_insufficient_funds(
        api: Client, pool: asyncpg.Pool, amount: int, currency: str) -> None:
    await credit(api, "payee_o", 1_000, "USD")
    before = (await counts(pool), await balances(api, "payee_o"))
    await problem(await post_payout(api, payout_body("payee_o", amount, currency)), 409, "INSUFFICIENT_FUNDS")
    assert (await counts(pool), await balances(api, "payee_o")) == before
    assert await pool.fetchval("SELECT count(*) FROM payouts") == 0


async def test_payouts_draw_the_balance_down_to_exactly_zero(api: Client, pool: asyncpg.Pool) -> None:
    await credit(api, "payee_z", 1_000)
    await ok(await post_payout(api, payout_body("payee_z", 600)), 201)
    await problem(await post_payout(api, payout_body("payee_z", 401)), 409, "INSUFFICIENT_FUNDS")
    await ok(await post_payout(api, payout_body("payee_z", 400)), 201)
    await problem(await post_payout(api, payout_body("payee_z", 1)), 409, "INSUFFICIENT_FUNDS")
    assert await balances(api, "payee_z") == {"USD": (0, 1_000)}
    assert await ledger_totals(pool) == {"USD": 0}


# --- idempotency --------------------------------------------------------------------------------------

async def test_payout_without_idempotency_key_is_400(api: Client, pool: asyncpg.Pool) -> None:
    await credit(api, "payee_k", 1_000)
    before = await counts(pool)
    body = await problem(await api.post("/api/payouts", json=payout_body("payee_k")), 400, "VALIDATION_FAILED")
    assert "Idempotency-Key" in body["detail"]
    assert await counts(pool) == before


@pytest.mark.parametrize("key", ["", "a b", "k" * 256, "tab\there"])
async def test_malformed_idempotency_key_is_400(api: Client, pool: asyncpg.Pool, key: str) -> None:
    await credit(api, "payee_k", 1_000)
    before = await counts(pool)
    await problem(await api.post("/api/payouts", json=payout_body("payee_k"), headers={"Idempotency-Key": key}),
                  400, "VALIDATION_FAILED")
    assert await counts(pool) == before


async def test_payout_same_key_same_body_returns_the_first_answer(api: Client, pool: asyncpg.Pool) -> None:
    await credit(api, "payee_s", 1_000)
    first = await ok(await post_payout(api, payout_body("payee_s", 250), key="order-42"), 201)
    again = await ok(await post_payout(api, payout_body("payee_s", 250), key="order-42"), 201)
    assert again == first
    # the same JSON object spelled differently (key order, whitespace) is the same request
    reordered = b'{ "destination":"ba_123", "currency":"USD", "amount":250, "payeeId":"payee_s" }'
    resp = await api.post("/api/payouts", data=reordered,
                          headers={"Idempotency-Key": "order-42", "Content-Type": "application/json"})
    assert await ok(resp, 201) == first
    assert await balances(api, "payee_s") == {"USD": (750, 250)}
    assert await pool.fetchval("SELECT count(*) FROM payouts") == 1


async def test_payout_same_key_different_body_is_409_reused(api: Client, pool: asyncpg.Pool) -> None:
    await credit(api, "payee_d", 1_000)
    first = await ok(await post_payout(api, payout_body("payee_d", 250), key="order-43"), 201)
    before = (await counts(pool), await balances(api, "payee_d"))
    for other in (payout_body("payee_d", 251), payout_body("payee_d", 250, destination="ba_other"),
                  payout_body("payee_d", 250, currency="EUR")):
        await problem(await post_payout(api, other, key="order-43"), 409, "IDEMPOTENCY_KEY_REUSED")
    assert (await counts(pool), await balances(api, "payee_d")) == before
    assert await ok(await post_payout(api, payout_body("payee_d", 250), key="order-43"), 201) == first


async def test_a_refused_payout_is_not_remembered_under_its_key(api: Client) -> None:
    # Only successful answers are stored: after the payee is credited, the retry with the same key decides again.
    await problem(await post_payout(api, payout_body("payee_late", 300), key="retry-me"), 409, "INSUFFICIENT_FUNDS")
    await credit(api, "payee_late", 300)
    created = await ok(await post_payout(api, payout_body("payee_late", 300), key="retry-me"), 201)
    assert await ok(await post_payout(api, payout_body("payee_late", 300), key="retry-me"), 201) == created
    assert await balances(api, "payee_late") == {"USD": (0, 300)}


async def test_idempotency_keys_are_scoped_per_route(api: Client) -> None:
    await credit(api, "payee_sc", 1_000)
    await ok(await api.post("/api/escrows", json={"escrowId": "esc_sc", "amount": 10, "currency": "USD"},
                            headers={"Idempotency-Key": "shared"}), 201)
    await ok(await post_payout(api, payout_body("payee_sc", 10), key="shared"), 201)


async def test_escrow_fund_with_a_key_replays_instead_of_409(api: Client, pool: asyncpg.Pool) -> None:
    body = {"escrowId": "esc_key", "amount": 700, "currency": "USD"}
    first = await ok(await api.post("/api/escrows", json=body, headers={"Idempotency-Key": "fund-1"}), 201)
    again = await ok(await api.post("/api/escrows", json=body, headers={"Idempotency-Key": "fund-1"}), 201)
    assert again == first
    await problem(await api.post("/api/escrows", json={**body, "amount": 701}, headers={"Idempotency-Key": "fund-1"}),
                  409, "IDEMPOTENCY_KEY_REUSED")
    await problem(await api.post("/api/escrows", json=body, headers={"Idempotency-Key": "fund-2"}),
                  409, "INVALID_STATE")
    assert (await get_escrow(api, "esc_key"))["funded"] == 700


async def test_escrow_release_with_a_key_is_applied_once(api: Client, pool: asyncpg.Pool) -> None:
    await fund(api, "esc_rk", 1_000)
    body = {"payeeId": "payee_rk", "amount": 300, "feeAmount": 30}
    first = await ok(await api.post("/api/escrows/esc_rk/release", json=body,
                                    headers={"Idempotency-Key": "rel-1"}), 200)
    assert first["released"] == 330
    events_before = await pool.fetchval("SELECT count(*) FROM events")
    again = await ok(await api.post("/api/escrows/esc_rk/release", json=body,
                                    headers={"Idempotency-Key": "rel-1"}), 200)
    assert again == first
    assert await pool.fetchval("SELECT count(*) FROM events") == events_before
    assert (await get_escrow(api, "esc_rk"))["released"] == 330
    assert await balances(api, "payee_rk") == {"USD": (300, 0)}
    before = (await counts(pool), await get_escrow(api, "esc_rk"))
    await problem(await api.post("/api/escrows/esc_rk/release", json={**body, "amount": 301},
                                 headers={"Idempotency-Key": "rel-1"}), 409, "IDEMPOTENCY_KEY_REUSED")
    assert (await counts(pool), await get_escrow(api, "esc_rk")) == before
    # without a key, the same body is a second release
    await ok(await api.post("/api/escrows/esc_rk/release", json=body), 200)
    assert (await get_escrow(api, "esc_rk"))["released"] == 660


async def test_escrow_refund_with_a_key_is_applied_once(api: Client) -> None:
    await fund(api, "esc_fk", 1_000)
    first = await ok(await api.post("/api/escrows/esc_fk/refund", json={"amount": 100},
                                    headers={"Idempotency-Key": "ref-1"}), 200)
    assert await ok(await api.post("/api/escrows/esc_fk/refund", json={"amount": 100},
                                   headers={"Idempotency-Key": "ref-1"}), 200) == first
    assert (await get_escrow(api, "esc_fk"))["refunded"] == 100
    await problem(await api.post("/api/escrows/esc_fk/refund", json={"amount": 99},
                                 headers={"Idempotency-Key": "ref-1"}), 409, "IDEMPOTENCY_KEY_REUSED")


async def test_twenty_concurrent_payouts_with_one_key_create_one(api: Client, pool: asyncpg.Pool) -> None:
    await credit(api, "payee_c", 10_000)
    body = payout_body("payee_c", 700)

    async def one() -> tuple[int, dict[str, Any]]:
        resp = await api.post("/api/payouts", json=body, headers={"Idempotency-Key": "same-key-20"})
        return resp.status, await resp.json(content_type=None)

    answers = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(20))), timeout=60)
    assert [s for s, _ in answers] == [201] * 20, answers
    assert len({b["payoutId"] for _, b in answers}) == 1
    assert all(b == answers[0][1] for _, b in answers)
    assert await balances(api, "payee_c") == {"USD": (10_000 - 700, 700)}
    assert await pool.fetchval("SELECT count(*) FROM payouts") == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = 'same-key-20'") == 1
    assert await ledger_totals(pool) == {"USD": 0}


async def test_thirty_two_concurrent_payouts_race_for_ten_slots(api: Client, pool: asyncpg.Pool) -> None:
    amount, fits, racers = 1_250, 10, 32
    await credit(api, "payee_race", amount * fits, fee=0)
    await credit(api, "payee_other", 999)  # a bystander whose balance must not move

    async def one(n: int) -> tuple[int, dict[str, Any]]:
        resp = await api.post("/api/payouts", json=payout_body("payee_race", amount, destination=f"ba_{n}"),
                              headers={"Idempotency-Key": f"race-{n}"})
        return resp.status, await resp.json(content_type=None)

    answers = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(racers))), timeout=60)
    created = [b for s, b in answers if s == 201]
    refused = [b for s, b in answers if s != 201]
    assert len(created) == fits, [s for s, _ in answers]
    assert len(refused) == racers - fits
    assert all(b["code"] == "INSUFFICIENT_FUNDS" and b["status"] == 409 for b in refused), refused
    assert len({b["payoutId"] for b in created}) == fits
    assert await balances(api, "payee_race") == {"USD": (0, amount * fits)}
    assert await balances(api, "payee_other") == {"USD": (999, 0)}
    assert await pool.fetchval("SELECT count(*) FROM payouts") == fits
    assert await pool.fetchval("SELECT count(*) FROM payouts WHERE payee_id = 'payee_race'") == fits
    assert await pool.fetchval("SELECT count(*) FROM outbox") == fits
    assert await pool.fetchval("SELECT count(*) FROM balances WHERE balance < 0 AND protected") == 0
    assert await ledger_totals(pool) == {"USD": 0}
    # the refusals were not remembered: a retry under a refused key after a top-up succeeds
    refused_key = next(f"race-{n}" for n, (s, _) in enumerate(answers) if s != 201)
    n = int(refused_key.split("-")[1])
    await credit(api, "payee_race", amount)
    resp = await api.post("/api/payouts", json=payout_body("payee_race", amount, destination=f"ba_{n}"),
                          headers={"Idempotency-Key": refused_key})
    await ok(resp, 201)


# --- X-Request-Id -------------------------------------------------------------------------------------

async def test_a_safe_request_id_is_echoed(api: Client) -> None:
    rid = "req-2024.01:abc_DEF"
    resp = await api.get("/api/payees/p/balances", headers={"X-Request-Id": rid})
    assert resp.status == 200 and resp.headers["X-Request-Id"] == rid
    body = await problem(await api.get("/api/escrows/none", headers={"X-Request-Id": rid}), 404, "NOT_FOUND")
    assert body["requestId"] == rid


async def test_request_id_reaches_event_metadata(api: Client) -> None:
    await fund(api, "esc_rid", 10)
    await ok(await api.post("/api/escrows/esc_rid/release", json={"payeeId": "payee_rid", "amount": 10}), 200)
    resp = await post_payout(api, payout_body("payee_rid", 10), headers={"X-Request-Id": "trace-77"})
    created = await ok(resp, 201)
    events = await ok(await api.get(f"/api/payouts/{created['payoutId']}/events"), 200)
    assert events["events"][0]["metadata"]["requestId"] == "trace-77"


@pytest.mark.parametrize("incoming", ["has space", "x" * 129, "semi;colon", "<script>"])
async def test_an_unsafe_request_id_is_replaced(api: Client, incoming: str) -> None:
    resp = await api.get("/api/escrows/none", headers={"X-Request-Id": incoming})
    body = await problem(resp, 404, "NOT_FOUND")
    assert resp.headers["X-Request-Id"] != incoming and re.fullmatch(r"[A-Za-z0-9._:-]{1,128}",
                                                                     resp.headers["X-Request-Id"])
    assert body["requestId"] == resp.headers["X-Request-Id"]


async def test_problems_carry_the_request_id_on_every_error_family(api: Client,
                                                                  raw: aiohttp.ClientSession) -> None:
    async with raw.get("/api/escrows/x", headers={"X-Request-Id": "rid-401"}) as resp:
        assert (await problem(resp, 401, "UNAUTHENTICATED"))["requestId"] == "rid-401"
    resp = await api.post("/api/escrows", data=b"nope", headers={"X-Request-Id": "rid-400"})
    assert (await problem(resp, 400, "VALIDATION_FAILED"))["requestId"] == "rid-400"
    await ok(await api.post("/api/escrows", json={"escrowId": "x", "amount": 1, "currency": "USD"}), 201)
    # funding it again is the 409 (a refund of an unknown escrow was, until it became 404: issue 11, defect 3)
    resp = await api.post("/api/escrows", json={"escrowId": "x", "amount": 2, "currency": "USD"},
                          headers={"X-Request-Id": "rid-409"})
    assert (await problem(resp, 409, "INVALID_STATE"))["requestId"] == "rid-409"


# --- fuzz ---------------------------------------------------------------------------------------------
# Choice: hypothesis `@given` on an async test, as tests/integration/test_ledger_properties.py does.
# pytest-asyncio drives each example on the session loop against the same live server and database
# (the `api` fixture is set up once per test function, hence the suppressed function_scoped_fixture
# health check: sharing one server and database across examples is intended; every example only
# needs "no 5xx, 4xx is problem+json", which holds regardless of what earlier examples wrote).
# Failing examples shrink and are replayed from hypothesis' database like any other property test.

# Text leaning on what breaks things: NUL and other controls, line separators, quotes, BOM, emoji, plain ASCII.
SPECIALS = ["\x00", "\x01", "\x7f", "\n", "\r", "\t", "\u2028", "\ufeff", "'", '"', "\\", "%", "/", "\U0001f600"]
chars = st.characters(codec="utf-8") | st.characters(max_codepoint=0x7F) | st.sampled_from(SPECIALS)
text = st.one_of(*[st.text(chars, min_size=1, max_size=40)] * 4, st.just(""),
                 st.text(chars, min_size=250, max_size=300))
json_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
             | st.floats(allow_nan=True, allow_infinity=True) | text)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
FIELDS = ["escrowId", "amount", "currency", "payeeId", "feeAmount", "destination"]
odd_value = (json_value | st.sampled_from(["USD", "EUR", "usd", "XYZ", "JPY", "", "a" * 129, "esc_fz"])
             | st.integers(min_value=-3, max_value=10**6))
ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,24}", fullmatch=True)
small = st.integers(1, 50)
# Per route, a nearly valid body: each field is usually right (so the command reaches the handler and the
# database) and sometimes anything at all. The payee and escrow they name hold money (_ensure_fuzz_funds).
NEAR_VALID: dict[str, dict[str, Any]] = {
    "/api/escrows": {"escrowId": ids, "amount": st.integers(1, 10**9), "currency": st.sampled_from(["USD", "JPY"])},
    "/api/escrows/{}/release": {"payeeId": st.just("fz_payee") | ids, "amount": small, "feeAmount": st.integers(0, 9)},
    "/api/escrows/{}/refund": {"amount": small},
    "/api/payouts": {"payeeId": st.just("fz_payee"), "amount": small, "currency": st.just("USD"),
                     "destination": st.text(chars, min_size=1, max_size=60) | text},
}
path_ids = st.one_of(text, st.text(chars, min_size=120, max_size=140),
                     st.sampled_from(["..", ".", "%", "a/b", "a%2Fb", "-", "esc_nope", "esc_fz\n"]))
ROUTES = list(NEAR_VALID)
GETS = ["/api/escrows/{}", "/api/payees/{}/balances", "/api/payouts/{}", "/api/payouts/{}/events"]


@st.composite
def near_valid(draw: st.DrawFn, route: str) -> dict[str, Any]:
    """Each field right 7 times in 8; sometimes one field dropped or one unknown field added."""
    body = {name: draw(odd_value if draw(st.integers(0, 7)) == 0 else good)
            for name, good in NEAR_VALID[route].items()}
    if draw(st.integers(0, 9)) == 0:
        body.pop(draw(st.sampled_from(sorted(body))))
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=10))] = draw(json_leaf)
    return body


def _encode(body: object) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # NaN/Infinity tokens are invalid JSON: also a fuzz case


def _contains_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(_contains_nul(v) for v in value)


async def _ensure_fuzz_funds(api: Client) -> None:
    """Keep money where nearly valid fuzz bodies point, so they get past the balance checks and reach the
    database (a refused command never writes, so without this the fuzz would hardly exercise the write path)."""
    if (await balances(api, "fz_payee")).get("USD", (0, 0))[0] < 60:
        await credit(api, "fz_payee", 5_000)
    resp = await api.get("/api/escrows/esc_fz")
    if resp.status == 404:
        await fund(api, "esc_fz", 10**12)


async def _assert_sane(resp: aiohttp.ClientResponse, what: object) -> None:
    text = await resp.text()
    assert resp.status < 500, (resp.status, what, text)
    if resp.status >= 400:
        assert_problem_shape(resp, text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), kind=st.sampled_from(["near"] * 6 + ["names"] * 2 + ["json", "bytes"]),
       with_key=st.booleans(), odd_path=st.integers(0, 3), data=st.data())
async def test_fuzz_post_routes_never_5xx(api: Client, route: str, kind: str, with_key: bool, odd_path: int,
                                          data: st.DataObject) -> None:
    if kind == "near":
        body: object = data.draw(near_valid(route), label="body")
    elif kind == "names":
        body = data.draw(st.dictionaries(st.sampled_from(FIELDS), odd_value, max_size=6), label="body")
    else:
        body = data.draw(json_value, label="body")
    raw_bytes = data.draw(st.binary(max_size=64), label="raw") if kind == "bytes" else None
    path_id = data.draw(path_ids, label="path id") if odd_path == 0 else "esc_fz"
    await _ensure_fuzz_funds(api)
    path = route.format(quote(path_id, safe=""))
    headers = {"Content-Type": "application/json"}
    if with_key or route == "/api/payouts":
        headers["Idempotency-Key"] = uid("fz-")
    payload = raw_bytes if raw_bytes is not None else _encode(body)
    resp = await api.post(path, data=payload, headers=headers)
    event(f"{route} -> {resp.status}{' (NUL)' if _contains_nul(body) else ''}")  # --hypothesis-show-statistics
    await _assert_sane(resp, (path, payload))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(GETS), path_id=path_ids)
async def test_fuzz_get_path_ids_never_5xx(api: Client, route: str, path_id: str) -> None:
    path = route.format(quote(path_id, safe=""))
    resp = await api.get(path)
    await _assert_sane(resp, path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.integers(1, 40), destination=text)
async def test_fuzz_funded_payouts_keep_the_ledger_balanced(api: Client, pool: asyncpg.Pool, amount: int,
                                                            destination: str) -> None:
    # Bodies that pass validation on a funded payee: they must be 201 (or 409 once the money is gone),
    # and the ledger must still sum to zero. Exercises arbitrary unicode destinations end to end.
    if (await balances(api, "fz_rich")).get("USD", (0, 0))[0] < 40:
        await credit(api, "fz_rich", 2_000)
    resp = await post_payout(api, payout_body("fz_rich", amount, destination=destination))
    text = await resp.text()
    if resp.status == 201:
        assert json.loads(text)["destination"] == destination
    else:
        # an empty, over-long (> 256 characters) or NUL-bearing destination is refused
        assert resp.status == 400 and (not 0 < len(destination) <= 256 or "\x00" in destination), (resp.status, text)
    totals = await ledger_totals(pool)
    assert all(v == 0 for v in totals.values()), totals


async def test_a_reused_key_is_named_in_the_409_detail(api: Client) -> None:
    """The client must be told WHICH key it reused (a batch client sends many): the detail names it, on the
    escrow commands' path (idempotency.lookup) and on the group-committed payout path (idempotency.check)."""
    await credit(api, "payee_nk", 1_000)
    await ok(await post_payout(api, payout_body("payee_nk", 100), key="order-nk-1"), 201)
    reused = await problem(await post_payout(api, payout_body("payee_nk", 101), key="order-nk-1"), 409,
                           "IDEMPOTENCY_KEY_REUSED")
    assert "'order-nk-1'" in reused["detail"], reused
    await ok(await api.post("/api/escrows", json={"escrowId": "esc_nk", "amount": 500, "currency": "USD"},
                            headers={"Idempotency-Key": "fund-nk-1"}), 201)
    reused = await problem(await api.post("/api/escrows", json={"escrowId": "esc_nk2", "amount": 500,
                                                                "currency": "USD"},
                                          headers={"Idempotency-Key": "fund-nk-1"}), 409, "IDEMPOTENCY_KEY_REUSED")
    assert "'fund-nk-1'" in reused["detail"], reused
