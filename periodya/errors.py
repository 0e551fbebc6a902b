"""Typed errors shared across layers. Each maps to one HTTP problem in periodya.http.problems."""

from __future__ import annotations

from typing import Any


class PeriodyaError(Exception):
    """Base of every error this service raises on purpose."""

    code = "ERROR"


class ConfigError(PeriodyaError):
    """The configuration cannot work (bad URL, unreachable database, schema missing)."""

    code = "CONFIG_ERROR"


class BadRequest(PeriodyaError):
    """Malformed input: unparseable JSON, wrong types, missing fields, a bad header, a forged cursor (400)."""

    code = "VALIDATION_FAILED"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class ConcurrencyConflict(PeriodyaError):
    """An append's expected version did not match the stream's actual version. Nothing was written."""

    code = "CONCURRENCY_CONFLICT"

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, actual {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class UnknownEventType(PeriodyaError):
    """An event read from the log has a type no model is registered for."""

    code = "UNKNOWN_EVENT_TYPE"
