"""Request ids, structured access logs, and the error boundary: every failure leaves as problem+json."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from aiohttp import web

from periodya.errors import PeriodyaError
from periodya.http import boundary
from periodya.http.problems import from_error, problem
from periodya.logging import get_logger

_UNAVAILABLE = (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError,
                ConnectionRefusedError, TimeoutError)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("request_id", str)
ACTOR = web.RequestKey("actor", str)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = get_logger("periodya.http")


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    response = await _guarded(request, handler, request_id)
    response.headers["X-Request-Id"] = request_id
    log.debug("request", method=request.method, path=request.path, status=response.status,
              ms=round((time.perf_counter() - started) * 1000, 2), actor=request.get(ACTOR))
    return response


async def _guarded(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except PeriodyaError as exc:
        return from_error(exc, request_id)
    except _UNAVAILABLE as exc:  # transient: the caller should retry, not page anyone about a 500
        log.warning("database unavailable", method=request.method, route=route_of(request), error=type(exc).__name__)
        response = problem(503, "UNAVAILABLE", "Service unavailable", "the database is busy or unreachable; retry",
                           requestId=request_id)
        response.headers["Retry-After"] = "5"
        return response
    except web.HTTPMethodNotAllowed as exc:  # RFC 9110: a 405 names the methods the resource takes
        response = problem(405, "METHOD_NOT_ALLOWED", exc.reason, exc.text or exc.reason, requestId=request_id)
        response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}.get(exc.status, "HTTP_ERROR")
        return problem(exc.status, code, exc.reason, exc.text or exc.reason, requestId=request_id)
    except Exception as exc:  # the boundary: ONE bounded log line (boundary.py), never a trace to the client
        input_code = boundary.unhandled(exc, request.method, route_of(request))
        if input_code is not None:
            return problem(400, input_code, "Invalid request",
                           "the request cannot be read: its encoding, characters or nesting", requestId=request_id)
        return problem(500, "INTERNAL", "Internal error", "an internal error occurred; quote the request id",
                       requestId=request_id)


def route_of(request: web.Request) -> str:
    """The route's pattern (`/api/payouts/{payout_id}`), never the client's path: a bounded log key."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
