"""GET /openapi.json: complete (no route without an operation, no operation without a route), valid
OpenAPI 3.1 (openapi-spec-validator), honest about security, and usable: a client built from it alone
funds an escrow, releases it, requests a payout and reads everything back, every answer checked against
the document. GET /docs renders it with no external asset."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openapi_spec_validator import validate

from periodya.admin import users
from periodya.config import Settings
from periodya.eventstore import EventStore
from periodya.handlers.unit_of_work import Meta
from periodya.http import api_models, openapi, operations
from periodya.http.app import create_app
from tests.conftest import CRON_SECRET, SERVICE_TOKEN
from tests.integration.spec_client import SpecClient, SpecError

PASSWORD = "correct horse battery staple"


def routes_only_app() -> web.Application:
    return create_app(Settings.from_env({}), None)  # type: ignore[arg-type]  # routes only: no pool needed


def test_every_route_has_an_operation_and_every_operation_a_route() -> None:
    undocumented, unrouted = openapi.drift(routes_only_app())
    assert undocumented == [], f"routes without an OpenAPI operation (add them to http/operations.py): {undocumented}"
    assert unrouted == [], f"documented operations with no route: {unrouted}"


def test_drift_names_an_undocumented_route_and_an_unrouted_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    app = routes_only_app()

    async def extra(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_post("/api/escrows/{escrow_id}/extra", extra)
    monkeypatch.setitem(operations.OPERATIONS, ("GET", "/api/gone"), operations.Op("gone", "gone", "x"))
    assert openapi.drift(app) == ([("POST", "/api/escrows/{escrow_id}/extra")], [("GET", "/api/gone")])


@pytest.fixture
async def served(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server = TestServer(create_app(settings, pool))
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield str(server.make_url("")).rstrip("/"), http
    await server.close()


async def fetch_spec(base: str, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(base + "/openapi.json") as r:  # no credentials: the document is public
        assert r.status == 200 and r.content_type == "application/json"
        spec: dict[str, Any] = await r.json()
    return spec


async def test_the_served_document_is_valid_openapi_3_1_and_names_every_operation(served: Any) -> None:
    spec = await fetch_spec(*served)
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    assert spec["openapi"] == "3.1.0"
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) == len(operations.OPERATIONS)
    assert set(spec["components"]["securitySchemes"]) >= {"serviceToken", "adminSession", "cronSecret"}
    run = spec["paths"]["/api/admin/ops/run/{job}"]["post"]
    assert run["security"] == [{"adminSession": []}, {"cronSecret": []}]
    payout = spec["paths"]["/api/payouts"]["post"]
    assert {"name": "Idempotency-Key", "in": "header", "required": True} .items() <= next(
        p for p in payout["parameters"] if p["name"] == "Idempotency-Key").items()
    assert payout["responses"]["409"]["content"]["application/problem+json"]["schema"]["allOf"][1][
        "properties"]["code"]["enum"] == ["CONCURRENCY_CONFLICT", "IDEMPOTENCY_KEY_REUSED", "INSUFFICIENT_FUNDS",
                                          "INVALID_STATE"]
    hook = spec["paths"]["/api/webhooks/provider"]["post"]
    assert any(p["name"] == "Stripe-Signature" and p["required"] for p in hook["parameters"])
    amount = spec["components"]["schemas"]["CreatePayout"]["properties"]["amount"]
    assert amount["type"] == "integer" and amount["format"] == "int64"


def concrete(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: "sentinel" if m.group(1) == "job" else "docs.js"
                  if m.group(1) == "asset" else f"x{m.group(1)}", path)


async def test_declared_security_is_what_the_server_enforces(served: Any) -> None:
    """Every operation that declares a scheme answers 401 without credentials; none other does."""
    base, http = served
    spec = await fetch_spec(base, http)
    for path, item in spec["paths"].items():
        for method, op in item.items():
            async with http.request(method.upper(), base + concrete(path), data=b"") as r:
                secured = bool(op["security"]) and {} not in op["security"]  # {}: a credential is optional
                assert (r.status == 401) == secured, (method, path, r.status, op["security"])


@pytest.fixture
async def spec_client(served: Any, pool: asyncpg.Pool) -> SpecClient:
    base, http = served
    await users.create_user(EventStore(pool), "ops@example.com", PASSWORD, meta=Meta(actor="test"))
    client = SpecClient(await fetch_spec(base, http), base, http,
                        {"serviceToken": SERVICE_TOKEN, "cronSecret": CRON_SECRET})
    login = await client.call("login", {"email": "ops@example.com", "password": PASSWORD})
    assert login.status == 200
    client.credentials["adminSession"] = login.body["token"]
    return client


async def test_a_client_built_from_the_document_creates_an_escrow_and_a_payout(spec_client: SpecClient) -> None:
    c, escrow, payee = spec_client, f"esc_{uuid.uuid4().hex[:8]}", f"payee_{uuid.uuid4().hex[:8]}"
    funded = await c.call("createEscrow", {"escrowId": escrow, "amount": 10_000, "currency": "EUR"},
                          **{"Idempotency-Key": f"k-{escrow}"})
    assert funded.status == 201 and funded.body["balance"] == 10_000
    released = await c.call("releaseEscrow", {"payeeId": payee, "amount": 9_000, "feeAmount": 500}, escrow_id=escrow)
    assert released.status == 200 and released.body["balance"] == 500
    payout = await c.call("createPayout", {"payeeId": payee, "amount": 4_000, "currency": "EUR",
                                           "destination": "ba_123"}, **{"Idempotency-Key": f"p-{escrow}"})
    assert payout.status == 201 and payout.body["status"] == "REQUESTED"
    payout_id = payout.body["payoutId"]
    api_models.Payout.model_validate(payout.body)  # the pydantic model agrees with its own schema
    assert (await c.call("getPayout", payout_id=payout_id)).body["payoutId"] == payout_id
    events = await c.call("getPayoutEvents", payout_id=payout_id)
    assert [e["type"] for e in events.body["events"]] == ["PayoutRequested"]
    balances = await c.call("getPayeeBalances", payee_id=payee)
    assert balances.body["balances"] == [{"currency": "EUR", "available": 5_000, "inFlight": 4_000}]
    assert (await c.call("getEscrow", escrow_id=escrow)).body["released"] == 9_500
    refused = await c.call("createPayout", {"payeeId": payee, "amount": 10**9, "currency": "EUR",
                                            "destination": "ba_123"}, **{"Idempotency-Key": f"q-{escrow}"})
    assert refused.status == 409 and refused.body["code"] == "INSUFFICIENT_FUNDS"
    # the admin side, every answer checked against the document too
    for op, args in (("getHealth", {}), ("listAlerts", {"status": "OPEN"}),
                     ("getPayoutAudit", {"payout_id": payout_id}), ("getEscrowAudit", {"escrow_id": escrow}),
                     ("getAccountAudit", {"account": f"payable:{payee}"}),
                     ("runJob", {"job": "sentinel", "mode": "recent"}), ("getLivez", {}), ("getReadyz", {})):
        assert (await c.call(op, **args)).status == 200, op
    assert (await c.call("forceFinalize", id=payout_id)).body["code"] == "INVALID_STATE"  # never sent
    quarantined = await c.call("quarantinePayout", {"reason": "drill"}, id=payout_id)
    assert quarantined.body["status"] == "QUARANTINED"
    assert (await c.call("cancelPayout", {"reason": "drill"}, id=payout_id)).body["status"] == "CANCELLED"
    assert (await c.call("logout")).status == 204


async def test_the_client_refuses_what_the_document_does_not_allow(spec_client: SpecClient) -> None:
    """The generated client's checks can fail: a fractional amount, a missing required header."""
    with pytest.raises(SpecError, match="amount"):
        await spec_client.call("createEscrow", {"escrowId": "e1", "amount": 1.5, "currency": "EUR"})
    with pytest.raises(SpecError, match="Idempotency-Key"):
        await spec_client.call("createPayout", {"payeeId": "p", "amount": 1, "currency": "EUR", "destination": "d"})


async def test_docs_page_renders_from_the_document_with_packaged_assets_only(served: Any) -> None:
    base, http = served
    async with http.get(base + "/docs") as r:
        assert r.status == 200 and r.content_type == "text/html"
        page = await r.text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert set(assets) == {"/docs/docs.js", "/docs/docs.css", "/openapi.json"}
    for asset in ("/docs/docs.js", "/docs/docs.css"):
        async with http.get(base + asset) as r:
            assert r.status == 200
            text = await r.text()
        assert not re.search(r"https?://", text), f"{asset} refers to an external URL"
        if asset.endswith(".js"):
            assert 'fetch("/openapi.json")' in text
    async with http.get(base + "/docs/other.js") as r:
        assert r.status == 404 and r.content_type == "application/problem+json"


async def test_a_method_the_route_lacks_is_405_problem_json_with_allow(served: Any) -> None:
    """RFC 9110: a 405 names the allowed methods (schemathesis' unsupported_method check found it missing)."""
    base, http = served
    async with http.request("TRACE", base + "/livez") as r:
        assert r.status == 405 and r.content_type == "application/problem+json"
        assert set(r.headers.get("Allow", "").replace(" ", "").split(",")) == {"GET", "HEAD"}
    async with http.request("DELETE", base + "/api/escrows", headers={"Authorization": "Bearer " + SERVICE_TOKEN}) as r:
        assert r.status == 405 and r.headers.get("Allow") == "POST"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
async def test_docs_page_shows_every_operation_in_a_real_browser(served: Any) -> None:
    """Headless Chromium loads /docs (its script fetches /openapi.json) and the page it builds has an
    element for every operation of the document."""
    base, http = served
    spec = await fetch_spec(base, http)
    browser = await asyncio.create_subprocess_exec(
        "chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
        "--dump-dom", base + "/docs", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    dom, _ = await asyncio.wait_for(browser.communicate(), 120)
    page = dom.decode()
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    missing = [i for i in ids if f'id="{i}"' not in page]
    assert not missing, page[:3000]
    assert "Could not load" not in page
