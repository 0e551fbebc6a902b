"""Admin reads for the on-call tools (`periodya ops`): payout list and search, one payout with its timeline
and ledger, the job table with overdue flags. Under /api/admin/, so behind the admin session (auth.py).

Every query parameter is validated: an unknown or repeated parameter, a NUL character or a bad value is
400 problem+json VALIDATION_FAILED, and nothing is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from periodya.errors import BadRequest
from periodya.handlers import payout_search
from periodya.handlers.payout_search import Cursor, PayoutQuery
from periodya.http.route_helpers import DEPS, json, path_id
from periodya.runners import job_status

routes = web.RouteTableDef()
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_MINUTES = re.compile(r"[0-9]{1,7}(\.[0-9]{1,6})?")  # ASCII digits only (\d takes any script's)
_LIMIT = re.compile(r"[0-9]{1,4}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,400}")
MAX_MINUTES = 10 * 366 * 24 * 60


def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    """The query string as one value per known name; refuses unknown or repeated names and NUL characters."""
    out: dict[str, str] = {}
    for name, value in request.query.items():
        if "\x00" in name or "\x00" in value:
            raise BadRequest("query parameters must not contain the NUL character",
                             [{"field": name.replace("\x00", ""), "message": "NUL character"}])
        if name not in allowed:
            raise BadRequest(f"unknown query parameter {name!r}; allowed: {', '.join(sorted(allowed))}",
                             [{"field": name, "message": "unknown parameter"}])
        if name in out:
            raise BadRequest(f"query parameter {name!r} given twice", [{"field": name, "message": "repeated"}])
        out[name] = value
    return out


def _check(name: str, value: str, ok: Callable[[str], Any], expected: str) -> Any:
    result = ok(value)
    if result is None or result is False:
        raise BadRequest(f"{name} must be {expected}", [{"field": name, "message": f"must be {expected}"}])
    return result


def _minutes(value: str) -> float | None:
    return float(value) if _MINUTES.fullmatch(value) and 0 < float(value) <= MAX_MINUTES else None


def _limit(value: str) -> int | None:
    return int(value) if _LIMIT.fullmatch(value) and 1 <= int(value) <= payout_search.MAX_LIMIT else None


def parse_payout_query(request: web.Request) -> PayoutQuery:
    q = _query(request, {"status", "payeeId", "providerPayoutId", "olderThanMinutes", "stuck", "limit", "cursor"})
    status = q.get("status")
    stuck = q.get("stuck")
    return PayoutQuery(
        status=None if status is None else _check(
            "status", status.upper(), lambda v: v if v in payout_search.STATUSES else None,
            f"one of {', '.join(payout_search.STATUSES)}"),
        payee_id=_id(q, "payeeId"), provider_payout_id=_id(q, "providerPayoutId"),
        older_than_minutes=None if "olderThanMinutes" not in q else _check(
            "olderThanMinutes", q["olderThanMinutes"], _minutes, f"a number of minutes above 0, at most {MAX_MINUTES}"),
        stuck=None if stuck is None else _check(
            "stuck", stuck.lower(), lambda v: v if v in payout_search.STUCK else None, "sending or sent"),
        limit=50 if "limit" not in q else _check(
            "limit", q["limit"], _limit, f"an integer from 1 to {payout_search.MAX_LIMIT}"),
        cursor=None if "cursor" not in q else Cursor.decode(_check(
            "cursor", q["cursor"], lambda v: v if _CURSOR.fullmatch(v) else None, "a cursor this API returned")))


def _id(q: dict[str, str], name: str) -> str | None:
    if name not in q:
        return None
    return str(_check(name, q[name], lambda v: v if _ID.fullmatch(v) else None, "1-128 of [A-Za-z0-9_.:-]"))


@routes.get("/api/admin/payouts")
async def list_payouts(request: web.Request) -> web.Response:
    query = parse_payout_query(request)
    deps = request.app[DEPS]
    return json(await payout_search.search_payouts(deps.store.pool, query, deps.clock(),
                                                   deps.settings.sending_stuck_minutes,
                                                   deps.settings.sent_stuck_minutes))


@routes.get("/api/admin/payouts/{id}")
async def get_payout(request: web.Request) -> web.Response:
    _query(request, set())
    return json(await payout_search.payout_detail(request.app[DEPS].store.pool, path_id(request, "id")))


@routes.get("/api/admin/jobs")
async def get_jobs(request: web.Request) -> web.Response:
    _query(request, set())
    deps = request.app[DEPS]
    return json(await job_status.job_status(deps.store.pool, deps.clock()))
