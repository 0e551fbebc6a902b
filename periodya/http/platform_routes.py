"""The platform command API (API.md): escrows, payee balances, payouts."""

from __future__ import annotations

import uuid

from aiohttp import web

from periodya.domain import escrow, payout
from periodya.handlers import platform, views
from periodya.handlers.payout_batch import PayoutBatcher
from periodya.http import schemas
from periodya.http.route_helpers import STORE, idempotency_key, json, meta, path_id

PAYOUTS = web.AppKey("payouts", PayoutBatcher)
routes = web.RouteTableDef()


@routes.post("/api/escrows")
async def create_escrow(request: web.Request) -> web.Response:
    body, raw = await schemas.parse(request, schemas.CreateEscrow)
    cmd = escrow.FundEscrow(body.escrow_id, body.amount, body.currency)
    status, out = await platform.execute(
        request.app[STORE], meta(request), lambda uow: platform.fund_escrow(uow, cmd),
        idempotency_key=idempotency_key(request), scope="POST /api/escrows", request=raw, created_status=201)
    return json(out, status)


@routes.post("/api/escrows/{escrow_id}/release")
async def release_escrow(request: web.Request) -> web.Response:
    escrow_id = path_id(request, "escrow_id")
    body, raw = await schemas.parse(request, schemas.ReleaseEscrow)
    cmd = escrow.ReleaseEscrow(escrow_id, body.payee_id, body.amount, body.fee_amount)
    status, out = await platform.execute(
        request.app[STORE], meta(request), lambda uow: platform.release_escrow(uow, cmd),
        idempotency_key=idempotency_key(request), scope=f"POST /api/escrows/{escrow_id}/release", request=raw)
    return json(out, status)


@routes.post("/api/escrows/{escrow_id}/refund")
async def refund_escrow(request: web.Request) -> web.Response:
    escrow_id = path_id(request, "escrow_id")
    body, raw = await schemas.parse(request, schemas.RefundEscrow)
    cmd = escrow.RefundEscrow(escrow_id, body.amount)
    status, out = await platform.execute(
        request.app[STORE], meta(request), lambda uow: platform.refund_escrow(uow, cmd),
        idempotency_key=idempotency_key(request), scope=f"POST /api/escrows/{escrow_id}/refund", request=raw)
    return json(out, status)


@routes.get("/api/escrows/{escrow_id}")
async def get_escrow(request: web.Request) -> web.Response:
    return json(await views.escrow_view(request.app[STORE].pool, path_id(request, "escrow_id")))


@routes.get("/api/payees/{payee_id}/balances")
async def get_payee_balances(request: web.Request) -> web.Response:
    return json(await views.payee_balances(request.app[STORE].pool, path_id(request, "payee_id")))


@routes.post("/api/payouts")
async def create_payout(request: web.Request) -> web.Response:
    key = idempotency_key(request, required=True)
    assert key is not None
    body, raw = await schemas.parse(request, schemas.CreatePayout)
    cmd = payout.RequestPayout(f"pay_{uuid.uuid4().hex}", body.payee_id, body.amount, body.currency,
                               body.destination)
    status, out = await request.app[PAYOUTS].request(cmd, meta(request), key, raw)  # group commit, see there
    return json(out, status)


@routes.get("/api/payouts/{payout_id}")
async def get_payout(request: web.Request) -> web.Response:
    return json(await views.payout_view(request.app[STORE].pool, path_id(request, "payout_id")))


@routes.get("/api/payouts/{payout_id}/events")
async def get_payout_events(request: web.Request) -> web.Response:
    return json(await views.payout_events(request.app[STORE].pool, path_id(request, "payout_id")))
