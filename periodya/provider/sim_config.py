"""The provider simulator's fault knobs, as set by `POST /_sim/config` (camelCase JSON, any subset)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel


def _rate() -> Any:
    return Field(0.0, ge=0.0, le=1.0)


def _millis(default: int = 0) -> Any:
    return Field(default, ge=0, le=3_600_000)


class SimConfig(BaseModel):
    """Every knob the simulator takes. Rates are probabilities in [0, 1], drawn from one seeded
    random.Random (`seed`), so a test that sets a seed gets the same faults in the same order."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True, strict=True)

    latency_ms: int = _millis()
    """Delay before answering every /v1 request."""
    error_rate: float = _rate()
    """Answer a /v1 request with a Stripe-style 500 before doing anything."""
    reject_create_rate: float = _rate()
    """Refuse a payout create with a Stripe-style 400 (no such destination) before creating anything."""
    drop_after_create_rate: float = _rate()
    """Create the payout, then close the connection with no response (replays answer normally)."""
    auto_settle: bool = False
    """Settle each new payout by itself after `settle_delay_ms`."""
    settle_delay_ms: int = _millis(1000)
    paid_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of auto-settled payouts that end `paid`; the rest end `failed` (account_closed)."""
    webhook_drop_rate: float = _rate()
    """Do not send the event at all (counted in webhooksDropped)."""
    webhook_duplicate_rate: float = _rate()
    """Send the same event (same id) twice."""
    webhook_delay_ms: int = _millis()
    bad_signature_rate: float = _rate()
    """Sign the event with a wrong secret."""
    webhook_url: str | None = None
    seed: int | None = None
    """Setting it re-seeds the fault dice."""

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http(s) URL")
        return value

    def merged(self, changes: Mapping[str, Any]) -> SimConfig:
        """A new config: this one with `changes` (camelCase) applied and the whole validated again."""
        return SimConfig.model_validate({**self.public(), **changes})

    def public(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)
