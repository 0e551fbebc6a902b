"""Every domain event, as an immutable pydantic model with a stable stored name (past tense).

Stored data uses camelCase keys, the same spelling the HTTP API shows. Times that a decision needs
(next attempt) travel inside the event; the moment of writing is the log's `recorded_at`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Event(BaseModel):
    """Base of every event: frozen, camelCase on the wire, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class PostedEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    account: str
    currency: str
    debit: int
    credit: int


# --- ledger ------------------------------------------------------------------------------------------
class LedgerGroupPosted(Event):
    event_type = "LedgerGroupPosted"
    group_id: str
    kind: str
    subject: str
    entries: tuple[PostedEntry, ...]


# --- escrow ------------------------------------------------------------------------------------------
class EscrowFunded(Event):
    event_type = "EscrowFunded"
    escrow_id: str
    amount: int
    currency: str


class EscrowReleased(Event):
    event_type = "EscrowReleased"
    escrow_id: str
    payee_id: str
    amount: int
    fee_amount: int
    currency: str


class EscrowRefunded(Event):
    event_type = "EscrowRefunded"
    escrow_id: str
    amount: int
    currency: str


# --- payout ------------------------------------------------------------------------------------------
Source = Literal["webhook", "reconcile", "repair", "outbox", "admin"]


class PayoutRequested(Event):
    event_type = "PayoutRequested"
    payout_id: str
    payee_id: str
    amount: int
    currency: str
    destination: str


class PayoutSendStarted(Event):
    event_type = "PayoutSendStarted"
    attempt: int


class PayoutSent(Event):
    event_type = "PayoutSent"
    provider_payout_id: str
    source: Source = "outbox"


class PayoutSendFailed(Event):
    """A send attempt failed in a way that is safe to retry (same idempotency key)."""

    event_type = "PayoutSendFailed"
    attempt: int
    error: str
    next_attempt_at: datetime


class PayoutSendAbandoned(Event):
    """The provider definitely holds no payout for this id and no more attempts will be made."""

    event_type = "PayoutSendAbandoned"
    attempts: int
    error: str


class PayoutRequeued(Event):
    event_type = "PayoutRequeued"
    reason: str


class PayoutProviderPaid(Event):
    event_type = "PayoutProviderPaid"
    provider_payout_id: str
    provider_event_id: str | None = None
    source: Source


class PayoutFinalized(Event):
    event_type = "PayoutFinalized"
    group_id: str
    source: Source


class PayoutProviderFailed(Event):
    event_type = "PayoutProviderFailed"
    provider_payout_id: str | None
    failure_code: str | None = None
    failure_message: str | None = None
    provider_event_id: str | None = None
    source: Source


class PayoutReversed(Event):
    """Funds went back to the payee's payable. `compensating` when the ledger had been finalized."""

    event_type = "PayoutReversed"
    group_id: str
    compensating: bool = False


class PayoutQuarantined(Event):
    event_type = "PayoutQuarantined"
    reason: str


class PayoutCancelled(Event):
    event_type = "PayoutCancelled"
    reason: str


# --- provider webhooks --------------------------------------------------------------------------------
class ProviderEventReceived(Event):
    """A provider webhook whose signature verified, stored once per provider event id."""

    event_type = "ProviderEventReceived"
    event_id: str
    type: str
    provider_payout_id: str | None
    payout_id: str | None
    status: str | None
    failure_code: str | None = None
    failure_message: str | None = None
    created: int | None = None
    amount: int | None = None
    currency: str | None = None


class ProviderEventApplied(Event):
    """The webhooks runner acted on a stored provider event (or decided it needs no action)."""

    event_type = "ProviderEventApplied"
    outcome: str


# --- alerts -------------------------------------------------------------------------------------------
class AlertRaised(Event):
    event_type = "AlertRaised"
    alert_id: str
    code: str
    severity: str
    subject: str
    details: dict[str, Any]
    remedy: str


class AlertAcknowledged(Event):
    event_type = "AlertAcknowledged"
    alert_id: str
    by: str
    note: str | None = None


class AlertResolved(Event):
    event_type = "AlertResolved"
    alert_id: str
    by: str
    note: str | None = None
    automatic: bool = False


ALL_EVENTS: tuple[type[Event], ...] = (
    AlertRaised, AlertAcknowledged, AlertResolved, ProviderEventReceived, ProviderEventApplied,
    LedgerGroupPosted, EscrowFunded, EscrowReleased, EscrowRefunded, PayoutRequested, PayoutSendStarted,
    PayoutSent, PayoutSendFailed, PayoutSendAbandoned, PayoutRequeued, PayoutProviderPaid, PayoutFinalized,
    PayoutProviderFailed, PayoutReversed, PayoutQuarantined, PayoutCancelled,
)
