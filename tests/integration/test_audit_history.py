"""History of a payout (with its ledger groups and provider events), an escrow and an account: from the
log, via the library, the CLI and the admin HTTP routes."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from periodya.audit import history
from periodya.cli import audit as audit_cli
from periodya.cli import build_parser
from periodya.domain import escrow, payout
from periodya.domain.decision import Decision
from periodya.domain.errors import NotFound
from periodya.domain.events import ProviderEventReceived
from periodya.eventstore import EventStore
from periodya.handlers import platform
from periodya.handlers.unit_of_work import Meta, UnitOfWork, run_command
from periodya.http.app import create_app
from periodya.projections.provider_events import stream as provider_stream
from periodya.runners import webhooks
from tests.clients import Client
from tests.integration import lifecycle
from tests.integration.test_admin_auth import bearer, make_user, token_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def _story(store: EventStore) -> None:
    """Fund, release, request a payout, send it, a signed paid webhook arrives and is applied."""
    m = Meta(actor="service:platform", request_id="req-1")
    await run_command(store, m, lambda u: platform.fund_escrow(u, escrow.FundEscrow("h-e", 5000, "USD")))
    await run_command(store, m, lambda u: platform.release_escrow(u, escrow.ReleaseEscrow("h-e", "h-p", 3000, 100)))
    req = payout.RequestPayout("h-po", "h-p", 1200, "USD", "ba_1")
    await run_command(store, Meta(actor="service:platform", request_id="req-2"),
                      lambda u: platform.request_payout(u, req))
    runner = Meta(actor="runner:outbox")
    await run_command(store, runner, lambda u: lifecycle.start_send(u, "h-po", NOW))
    await run_command(store, runner, lambda u: lifecycle.record_sent(u, "h-po", "po_h", "outbox"))
    received = ProviderEventReceived(event_id="evt_1", type="payout.paid", provider_payout_id="po_h", payout_id="h-po",
                                     status="paid")

    async def store_once(u: UnitOfWork) -> None:
        await u.commit(provider_stream("evt_1"), 0, Decision((received,)))

    await run_command(store, Meta(actor="provider", request_id="req-hook"), store_once)
    await run_command(store, Meta(actor="runner:webhooks"), lambda u: webhooks.apply_event(u, "evt_1"))
    await run_command(store, Meta(actor="admin:ops@example.com", reason="drill", request_id="req-3"),
                      lambda u: platform.request_payout(u, payout.RequestPayout("h-po2", "h-p", 100, "USD", "ba_1")))


async def test_payout_history_names_every_event_group_and_provider_event(pool: asyncpg.Pool) -> None:
    await _story(EventStore(pool))
    body = await history.payout_history(pool, "h-po")
    assert body == await history.payout_history(pool, "po_h")  # by the provider's id too
    types = [(e["stream"], e["type"]) for e in body["events"]]
    assert types == [
        ("payout-h-po", "PayoutRequested"), ("ledger-payout-h-po@1:payout_reserved", "LedgerGroupPosted"),
        ("payout-h-po", "PayoutSendStarted"), ("payout-h-po", "PayoutSent"),
        ("provider-event-evt_1", "ProviderEventReceived"),
        ("payout-h-po", "PayoutProviderPaid"), ("payout-h-po", "PayoutFinalized"),
        ("ledger-payout-h-po@5:payout_finalized", "LedgerGroupPosted"),
        ("provider-event-evt_1", "ProviderEventApplied")]
    positions = [e["position"] for e in body["events"]]
    assert positions == sorted(positions)
    first = body["events"][0]
    assert (first["actor"], first["requestId"], first["kind"]) == ("service:platform", "req-2", "payout")
    assert body["events"][4]["actor"] == "provider"
    assert body["state"]["status"] == payout.FINALIZED and body["state"]["ledgerFinalized"] is True
    assert body["providerPayoutIds"] == ["po_h"]


async def test_escrow_and_account_history(pool: asyncpg.Pool) -> None:
    await _story(EventStore(pool))
    esc = await history.escrow_history(pool, "h-e")
    assert [e["type"] for e in esc["events"]] == ["EscrowFunded", "LedgerGroupPosted", "EscrowReleased",
                                                  "LedgerGroupPosted"]
    assert esc["state"]["balance"] == 1900 and esc["state"]["funded"] == 5000
    acct = await history.account_history(pool, "payable:h-p")
    assert [(e["kind"], e["debit"], e["credit"], e["balance"]) for e in acct["entries"]] == [
        ("escrow_released", 0, 3000, 3000), ("payout_reserved", 1200, 0, 1800), ("payout_reserved", 100, 0, 1700)]
    assert acct["entries"][2]["reason"] == "drill" and acct["entries"][2]["subject"] == "payout-h-po2"
    live = await pool.fetchval("SELECT balance FROM balances WHERE account = 'payable:h-p'")
    assert acct["balances"] == [{"currency": "USD", "balance": live}]


@pytest.mark.parametrize("fetch,ident", [(history.payout_history, "nope"), (history.escrow_history, "nope"),
                                         (history.account_history, "payable:nope")])
async def test_unknown_ids_are_not_found(pool: asyncpg.Pool, fetch: Any, ident: str) -> None:
    with pytest.raises(NotFound):
        await fetch(pool, ident)


async def test_history_cli_prints_a_table_and_json(pool: asyncpg.Pool, settings: Any) -> None:
    await _story(EventStore(pool))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await audit_cli.cmd_history(build_parser().parse_args(["history", "payout", "po_h"]), settings) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("payout h-po: ") and "status FINALIZED" in lines[0]
    assert lines[1].split()[:4] == ["POS", "RECORDED_AT", "STREAM", "TYPE"]
    assert any("provider-event-evt_1 v1" in line and "ProviderEventReceived" in line for line in lines)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = build_parser().parse_args(["history", "account", "payable:h-p", "--json"])
        assert await audit_cli.cmd_history(args, settings) == 0
    assert '"balance": 1700' in out.getvalue()


@pytest.fixture
async def client(settings: Any, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    http = TestClient(TestServer(create_app(settings, pool)))
    await http.start_server()
    yield http
    await http.close()


async def test_admin_audit_routes(pool: asyncpg.Pool, client: Client) -> None:
    await _story(EventStore(pool))
    await make_user(pool)
    await make_user(pool, "viewer@example.com", roles=("viewer",))
    admin, viewer = bearer(await token_for(client)), bearer(await token_for(client, "viewer@example.com"))
    paths = ["/api/admin/audit/payouts/po_h", "/api/admin/audit/escrows/h-e", "/api/admin/audit/accounts/payable:h-p"]
    for path in paths:
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers=viewer)).status == 403
        resp = await client.get(path, headers=admin)
        assert resp.status == 200, await resp.text()
    body = await (await client.get(paths[0], headers=admin)).json()
    assert body["payoutId"] == "h-po" and len(body["events"]) == 9
    for path in ("/api/admin/audit/payouts/none", "/api/admin/audit/escrows/none",
                 "/api/admin/audit/accounts/payable:none"):
        resp = await client.get(path, headers=admin)
        assert resp.status == 404 and resp.content_type == "application/problem+json"
        assert (await resp.json())["code"] == "NOT_FOUND"
