"""GET /api/admin/audit/{payouts,escrows,accounts}/{id}: the history commands over HTTP (admin session:
the auth middleware guards /api/admin/**). Unknown ids answer 404 problem+json (NotFound)."""

from __future__ import annotations

from aiohttp import web

from periodya.audit import history
from periodya.http.route_helpers import STORE, json, path_id

routes = web.RouteTableDef()


@routes.get("/api/admin/audit/payouts/{payout_id}")
async def payout_history(request: web.Request) -> web.Response:
    return json(await history.payout_history(request.app[STORE].pool, path_id(request, "payout_id")))


@routes.get("/api/admin/audit/escrows/{escrow_id}")
async def escrow_history(request: web.Request) -> web.Response:
    return json(await history.escrow_history(request.app[STORE].pool, path_id(request, "escrow_id")))


@routes.get("/api/admin/audit/accounts/{account}")
async def account_history(request: web.Request) -> web.Response:
    return json(await history.account_history(request.app[STORE].pool, path_id(request, "account")))
