"""The one place a failure becomes a log line, bounded so that no stranger can amplify it into the log.

* `unhandled`: any exception escaping a handler. ONE line per request. A client's input that a lower
  layer could not take (characters PostgreSQL text cannot hold, a string that is not UTF-8, nesting
  that exhausts the recursion limit, a body that does not decode as its Content-Encoding) is a 400
  with one warning line and never a traceback; anything else is our own bug: a 500 whose line carries
  the traceback at most once per minute per route (the other lines of that minute say
  `traceback: "suppressed"`).
* `refused`: a failed credential check or webhook signature, and a request the HTTP parser refused.
  At most REFUSALS_PER_MINUTE lines per kind per minute; the next line of that kind says how many were
  not logged in between (`suppressed`). Never given a token, secret or signature. This is the single
  function to count refusals in (a /metrics counter goes here).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

from periodya import metrics
from periodya.logging import get_logger

log = get_logger("periodya.http")
TRACEBACK_EVERY = 60.0
REFUSALS_PER_MINUTE = 30
CLIENT_INPUT = (UnicodeError, RecursionError, asyncpg.CharacterNotInRepertoireError,
                asyncpg.UntranslatableCharacterError, RequestPayloadError, HttpProcessingError)
"""Exceptions only a client's bytes cause (a lower layer refusing them): answered 400, never traced."""


class Window:
    """Allows `limit` events per key per `seconds`; counts what it refused until the next allowed one.
    Memory is bounded by the number of keys, which callers draw from fixed sets (kinds, routes)."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.seconds, self.clock = limit, seconds, clock
        self._start: dict[str, float] = {}
        self._used: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """(allowed, how many were refused since the last allowed one; reset when allowed)."""
        now = self.clock()
        if now - self._start.get(key, -self.seconds - 1) >= self.seconds:
            self._start[key], self._used[key] = now, 0
        if self._used[key] >= self.limit:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._used[key] += 1
        return True, self._suppressed.pop(key, 0)


_tracebacks = Window(1, TRACEBACK_EVERY)
_refusals = Window(REFUSALS_PER_MINUTE, 60.0)


def unhandled(exc: BaseException, method: str, route: str) -> str | None:
    """Log an exception that escaped a handler (one line). Returns the problem code of a 400 when it is a
    client's input (BAD_REQUEST for an unreadable body, VALIDATION_FAILED for the rest), None when it is
    our bug (a 500)."""
    if isinstance(exc, CLIENT_INPUT):
        log.warning("request_input_refused", method=method, route=route, error=type(exc).__name__)
        return "BAD_REQUEST" if isinstance(exc, RequestPayloadError | HttpProcessingError) else "VALIDATION_FAILED"
    traced, suppressed = _tracebacks.allow(route)
    if traced:
        log.error("unhandled_error", method=method, route=route, error=type(exc).__name__,
                  exc_info=exc, tracebacksSuppressed=suppressed)
    else:
        log.error("unhandled_error", method=method, route=route, error=type(exc).__name__,
                  traceback="suppressed")
    return None


def refused(kind: str, **fields: object) -> None:
    """One warning line for a refused credential, signature or request (rate-limited per kind).

    `kind` is from a fixed set (service_token, cron_secret, session, webhook_signature, http_parser);
    `fields` must never hold a token, a secret or a signature."""
    metrics.REFUSALS.labels(kind).inc()  # counted always; the log line below is rate-limited
    allowed, suppressed = _refusals.allow(kind)
    if allowed:
        log.warning("refused", kind=kind, **fields, **({"suppressed": suppressed} if suppressed else {}))
