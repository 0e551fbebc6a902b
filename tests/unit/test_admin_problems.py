"""The login throttle's error renders as 429 problem+json with Retry-After."""

from __future__ import annotations

import orjson

from periodya.admin.throttle import TooManyAttempts
from periodya.http.problems import from_error


def test_too_many_attempts_is_429_with_retry_after() -> None:
    response = from_error(TooManyAttempts(42), "req-1")
    assert response.status == 429
    assert response.headers["Retry-After"] == "42"
    assert response.content_type == "application/problem+json"
    assert isinstance(response.body, bytes)
    body = orjson.loads(response.body)
    assert body["code"] == "TOO_MANY_ATTEMPTS" and body["status"] == 429 and body["requestId"] == "req-1"
