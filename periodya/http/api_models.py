"""Response shapes of the HTTP API as pydantic models: the OpenAPI document's response schemas
(periodya/http/openapi.py) and the tests' check of real answers are built from these.

Closed (`additionalProperties: false`) on purpose: a field the server adds without adding it here fails
the schema conformance checks (tests/integration/test_openapi*.py), so the document cannot fall behind.
Open objects (`data`, `metadata`, `details`, `outcomes`, `state`) are event or job payloads whose keys
depend on the event type or job.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PayoutStatus = Literal["REQUESTED", "SENDING", "SENT", "PAID", "FINALIZED", "FAILED", "QUARANTINED", "CANCELLED"]
Timestamp = str  # RFC 3339 UTC, e.g. 2026-01-05T10:00:00.123456Z
MinorUnits = int  # integer minor units of the currency, never a fraction


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Escrow(Shape):
    escrow_id: str
    currency: str
    funded: MinorUnits
    released: MinorUnits = Field(description="everything released out of the escrow, platform fees included")
    refunded: MinorUnits
    balance: MinorUnits = Field(description="funded - released - refunded")
    created_at: Timestamp
    updated_at: Timestamp


class OutboxTask(Shape):
    status: Literal["PENDING", "SENDING", "SENT", "DONE", "FAILED"] | None
    attempts: int | None
    last_error: str | None
    next_attempt_at: Timestamp | None


class Payout(Shape):
    payout_id: str
    payee_id: str
    amount: MinorUnits
    currency: str
    destination: str
    status: PayoutStatus
    provider_payout_id: str | None
    provider_status: str | None
    ledger_finalized: bool
    funds_returned: bool
    quarantine_reason: str | None
    outbox: OutboxTask
    created_at: Timestamp
    updated_at: Timestamp


class CurrencyBalance(Shape):
    currency: str
    available: MinorUnits
    in_flight: MinorUnits


class PayeeBalances(Shape):
    payee_id: str
    balances: list[CurrencyBalance]


class PayoutEvent(Shape):
    position: int
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: Timestamp


class PayoutEvents(Shape):
    payout_id: str
    events: list[PayoutEvent]


class LoginResult(Shape):
    token: str
    expires_at: Timestamp


class WebhookAck(Shape):
    received: Literal[True]
    duplicate: bool


class JobSummary(Shape):
    job: str
    processed: int
    succeeded: int
    failed: int
    skipped: int
    duration_ms: float
    outcomes: dict[str, int]


class Alert(Shape):
    alert_id: str
    code: str
    severity: Literal["critical", "warning"]
    status: Literal["OPEN", "ACKNOWLEDGED", "RESOLVED"]
    subject: str
    details: dict[str, Any]
    remedy: str
    raised_at: Timestamp
    acked_at: Timestamp | None
    acked_by: str | None
    resolved_at: Timestamp | None
    resolved_by: str | None
    note: str | None
    automatic: bool


class AlertList(Shape):
    alerts: list[Alert]


class StuckSending(Shape):
    payout_id: str
    since: Timestamp


class StuckSent(Shape):
    payout_id: str
    provider_payout_id: str | None
    since: Timestamp


class FinalizeMissing(Shape):
    payout_id: str
    provider_payout_id: str | None
    alert_id: str
    since: Timestamp


class JobStatus(Shape):
    last_run_at: Timestamp | None
    finished_at: Timestamp | None
    trigger: str | None
    ok: bool | None
    duration_ms: float | None
    error: str | None
    processed: int | None


class ReaderLag(Shape):
    events_behind_horizon: int


class Thresholds(Shape):
    sending_stuck_minutes: float
    sent_stuck_minutes: float
    finalize_grace_minutes: float


class Health(Shape):
    status: Literal["ok", "degraded", "critical"]
    payout_outbox_pending: int
    payout_outbox_sending_stuck: int
    provider_payout_sent_stuck10m: int = Field(alias="providerPayoutSentStuck10m")
    integrity_alerts_critical_open: int
    alerts_open: int
    max_outbox_age_minutes: float
    webhooks_pending: int
    webhooks_refused: int = Field(description="provider webhook deliveries refused in the last hour (every process)")
    reader_lag: ReaderLag
    sending_stuck: list[StuckSending]
    sent_stuck: list[StuckSent]
    finalize_missing: list[FinalizeMissing]
    jobs: dict[str, JobStatus] = Field(description="the latest run of each job, keyed `job` or `job:mode`")
    thresholds: Thresholds
    checked_at: Timestamp


class TimelineItem(Shape):
    position: int
    tx: int
    stream: str
    kind: str
    version: int
    type: str
    recorded_at: Timestamp
    actor: str | None
    reason: str | None
    request_id: str | None
    data: dict[str, Any]
    metadata: dict[str, Any]


class PayoutHistory(Shape):
    payout_id: str
    provider_payout_ids: list[str]
    state: dict[str, Any] | None
    events: list[TimelineItem]


class EscrowHistory(Shape):
    escrow_id: str
    state: dict[str, Any] | None
    events: list[TimelineItem]


class AccountBalance(Shape):
    currency: str
    balance: MinorUnits


class AccountEntry(Shape):
    position: int
    tx: int
    recorded_at: Timestamp
    group_id: str
    kind: str
    subject: str
    line: int
    currency: str
    debit: MinorUnits
    credit: MinorUnits
    balance: MinorUnits
    actor: str | None
    reason: str | None
    request_id: str | None


class AccountHistory(Shape):
    account: str
    balances: list[AccountBalance]
    entries: list[AccountEntry]


class Liveness(Shape):
    status: Literal["ok"]


class Readiness(Shape):
    status: Literal["ready"]
    checks: dict[str, Any]


class FieldError(Shape):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error answer carries them (application/problem+json)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = Field(None, alias="requestId")
    errors: list[FieldError] | None = None
