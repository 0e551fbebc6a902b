"""The runbook's API (sections 2-4), /api/admin/ops/*: health, alerts, manual payout commands, job runs.

Every route is under /api/admin/ and so behind the admin session check (auth.py); the cron secret
is accepted on the run endpoints only: POST, and GET for schedulers that can only GET (Vercel Cron).
A GET run takes the cron secret ONLY: an admin session on it is refused (403), so a browser holding a
session never changes state with a GET.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, StrictStr

from periodya.deps import Deps
from periodya.domain.errors import ValidationFailed
from periodya.handlers import alerts, views
from periodya.handlers import operator_actions as ops
from periodya.handlers.health import alert_json, health, list_alerts
from periodya.handlers.unit_of_work import Meta, UnitOfWork, run_command
from periodya.http import schemas
from periodya.http.auth import PRINCIPAL
from periodya.http.middleware import ACTOR, REQUEST_ID
from periodya.http.problems import Forbidden
from periodya.http.route_helpers import DEPS, json, path_id
from periodya.runners.execute import execute_job

routes = web.RouteTableDef()
Note = Annotated[StrictStr, Field(max_length=1000)]
ALERT_CODE = re.compile(r"[A-Za-z_]{1,64}")


class ReasonBody(schemas.Body):
    reason: schemas.Reason


class NoteBody(schemas.Body):
    note: Note | None = None


def _deps(request: web.Request) -> Deps:
    return request.app[DEPS]


def _meta(request: web.Request, reason: str | None = None) -> Meta:
    return Meta(actor=request.get(ACTOR, "anonymous"), request_id=request.get(REQUEST_ID), reason=reason)


@routes.get("/api/admin/ops/health")
async def get_health(request: web.Request) -> web.Response:
    return json(await health(_deps(request)))


@routes.post("/api/admin/ops/run/{job}")
async def run_job(request: web.Request) -> web.Response:
    return await _run_job(request)


async def _run_job(request: web.Request) -> web.Response:
    job = request.match_info["job"]
    mode = request.query.get("mode")
    if job == "sentinel":
        mode = mode or "recent"
        if mode not in ("recent", "full"):
            raise ValidationFailed("mode must be recent or full")
    elif mode is not None:
        raise ValidationFailed("only the sentinel takes a mode")
    raw_batch = request.query.get("batch")
    if raw_batch is not None and not (raw_batch.isascii() and raw_batch.isdigit() and len(raw_batch) <= 9):
        raise ValidationFailed("batch must be a positive integer")
    summary = await execute_job(_deps(request), job, batch=int(raw_batch) if raw_batch else None, mode=mode,
                                trigger=f"http:{request.get(ACTOR, 'anonymous')}")
    return json(summary)


@routes.get("/api/admin/ops/run/{job}", allow_head=False)
async def run_job_by_cron_get(request: web.Request) -> web.Response:
    """GET /api/admin/ops/run/{job}: the same run, for Vercel Cron (GET + `Authorization: Bearer $CRON_SECRET`)."""
    principal = request.get(PRINCIPAL)
    if principal is None or principal.kind != "cron":
        raise Forbidden("a GET run takes the cron secret only; with an admin session, use POST")
    return await _run_job(request)


@routes.get("/api/admin/ops/alerts")
async def get_alerts(request: web.Request) -> web.Response:
    # Every filter in either case (the runbook writes severity=CRITICAL): stored forms are upper-case
    # status and code, lower-case severity.
    q = {key: value.lower() if key == "severity" else value.upper() for key, value in request.query.items()}
    for key, allowed in (("status", {"OPEN", "ACKNOWLEDGED", "RESOLVED"}), ("severity", {"critical", "warning"})):
        if key in q and q[key] not in allowed:
            raise ValidationFailed(f"{key} must be one of {sorted(allowed)} (either case)")
    if "code" in q and not ALERT_CODE.fullmatch(q["code"]):
        raise ValidationFailed("code must be an alert code (letters and _)")
    return json({"alerts": await list_alerts(_deps(request), q.get("status"), q.get("severity"), q.get("code"))})


async def _alert_command(request: web.Request, command: Callable[..., Awaitable[None]]) -> web.Response:
    alert_id = path_id(request, "alert_id")
    body, _ = await schemas.parse(request, NoteBody, optional=True)
    deps = _deps(request)
    meta = _meta(request, body.note)
    await run_command(deps.store, meta, lambda u: command(u, alert_id, meta.actor, body.note))
    row = await deps.store.pool.fetchrow("SELECT * FROM alerts WHERE alert_id = $1", alert_id)
    return json(alert_json(row))


@routes.post("/api/admin/ops/alerts/{alert_id}/ack")
async def ack_alert(request: web.Request) -> web.Response:
    return await _alert_command(request, alerts.acknowledge)


@routes.post("/api/admin/ops/alerts/{alert_id}/resolve")
async def resolve_alert(request: web.Request) -> web.Response:
    return await _alert_command(request, alerts.resolve)


async def _payout_command(request: web.Request, body_model: type[schemas.Body] | None,
                          command: Callable[[Deps, UnitOfWork, str, Any], Awaitable[None]]) -> web.Response:
    deps = _deps(request)
    payout_id = await views.resolve_payout_id(deps.store.pool, path_id(request, "id"))
    reason = None
    if body_model is not None:
        body, _ = await schemas.parse(request, body_model)
        reason = body.reason.strip()  # type: ignore[attr-defined]
        if not reason:
            raise ValidationFailed("reason must not be blank")
    await run_command(deps.store, _meta(request, reason), lambda u: command(deps, u, payout_id, reason))
    return json(await views.payout_view(deps.store.pool, payout_id))


@routes.post("/api/admin/ops/payouts/{id}/rerun-outbox")
async def rerun_outbox(request: web.Request) -> web.Response:
    return await _payout_command(request, None, lambda d, u, p, r: ops.rerun_outbox(u, p))


@routes.post("/api/admin/ops/payouts/{id}/force-reconcile")
async def force_reconcile(request: web.Request) -> web.Response:
    return await _payout_command(request, None, lambda d, u, p, r: ops.force_reconcile(d, u, p))


@routes.post("/api/admin/ops/payouts/{id}/force-finalize")
async def force_finalize(request: web.Request) -> web.Response:
    return await _payout_command(request, None, lambda d, u, p, r: ops.force_finalize(d, u, p))


@routes.post("/api/admin/ops/payouts/{id}/quarantine")
async def quarantine(request: web.Request) -> web.Response:
    return await _payout_command(request, ReasonBody, lambda d, u, p, r: ops.quarantine(u, p, r))


@routes.post("/api/admin/ops/payouts/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    return await _payout_command(request, ReasonBody, lambda d, u, p, r: ops.cancel(d, u, p, r))
