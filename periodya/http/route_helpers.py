"""What every route module shares: the app's keys (the event store, the jobs' dependencies), JSON answers,
the request's Meta (actor, request id), and the checks of path ids and Idempotency-Key (400 problem+json)."""

from __future__ import annotations

import re

import orjson
from aiohttp import web

from periodya.deps import Deps
from periodya.errors import BadRequest
from periodya.eventstore import EventStore
from periodya.handlers.unit_of_work import Meta
from periodya.http.middleware import ACTOR, REQUEST_ID

STORE = web.AppKey("store", EventStore)
DEPS = web.AppKey("ops_deps", Deps)  # store, provider, settings and clock of the jobs and the runbook routes
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
