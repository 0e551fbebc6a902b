"""The platform command API (API.md): escrows, payee balances, payouts."""

from __future__ import annotations

import re
import uuid

import orjson
from aiohttp import web

from periodya.domain import escrow, payout
from periodya.errors import BadRequest
from periodya.eventstore import EventStore
from periodya.handlers import platform, views
from periodya.handlers.payout_batch import PayoutBatcher
from periodya.handlers.unit_of_work import Meta
from periodya.http import schemas
from periodya.http.middleware import ACTOR, REQUEST_ID

STORE = web.AppKey("store", EventStore)
PAYOUTS = web.AppKey("payouts", PayoutBatcher)
routes = web.RouteTableDef()
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def meta(request: web.Request) -> Meta:
    return Meta(actor=request.get(ACTOR, "anonymous"), request_id=request.get(REQUEST_ID))


def idempotency_key(request: web.Request, *, required: bool = False) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        if required:
            raise BadRequest("the Idempotency-Key header is required")
        return None
    if not _KEY.fullmatch(key):
        raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters")
    return key


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        raise BadRequest(f"{name} is not a valid identifier")
    return value


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
