"""RFC 9457 problem+json responses, and the one mapping from typed errors to HTTP statuses."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from periodya.admin.throttle import TooManyAttempts
from periodya.domain.errors import (
    InsufficientFunds,
    InvalidState,
    NotFound,
    OverdraftRefused,
    UnbalancedGroup,
    ValidationFailed,
)
from periodya.errors import BadRequest, ConcurrencyConflict, PeriodyaError

CONTENT_TYPE = "application/problem+json"


class Unauthenticated(PeriodyaError):
    code = "UNAUTHENTICATED"


class Forbidden(PeriodyaError):
    code = "FORBIDDEN"


_STATUS: list[tuple[type[PeriodyaError], int, str]] = [
    (BadRequest, 400, "Invalid request"),
    (ValidationFailed, 422, "Invalid request"),
    (UnbalancedGroup, 422, "Ledger group does not balance"),
    (Unauthenticated, 401, "Authentication required"),
    (Forbidden, 403, "Forbidden"),
    (NotFound, 404, "Not found"),
    (InvalidState, 409, "Not allowed in the current state"),
    (InsufficientFunds, 409, "Insufficient funds"),
    (OverdraftRefused, 409, "Insufficient funds"),
    (ConcurrencyConflict, 409, "Concurrent modification"),
    (TooManyAttempts, 429, "Too many attempts"),
]


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> web.Response:
    body = {"type": f"https://periodya.dev/problems/{code.lower().replace('_', '-')}", "title": title,
            "status": status, "detail": detail, "code": code, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.Response(status=status, body=orjson.dumps(body), content_type=CONTENT_TYPE, headers=headers)


def from_error(exc: PeriodyaError, request_id: str | None) -> web.Response:
    for kind, status, title in _STATUS:
        if isinstance(exc, kind):
            extra: dict[str, Any] = {"requestId": request_id}
            if isinstance(exc, BadRequest) and exc.errors:
                extra["errors"] = exc.errors
            response = problem(status, exc.code, title, str(exc), **extra)
            if isinstance(exc, TooManyAttempts):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
    if exc.code == "IDEMPOTENCY_KEY_REUSED":
        return problem(409, exc.code, "Idempotency key reused", str(exc), requestId=request_id)
    return problem(400, exc.code, "Request refused", str(exc), requestId=request_id)
