"""What each route means, keyed by the route table's (method, path template): the OpenAPI builder
(periodya/http/openapi.py) walks the app's real router and looks every route up here.

The route table stays the one source of which routes exist: `openapi.drift(app)` names a route with no
entry here and an entry with no route, and tests/integration/test_openapi.py fails on either. Request
bodies are the very pydantic models the handlers validate with; responses are periodya/http/api_models.
Security is not listed here: it is derived from the path by the same rules auth.py applies
(openapi.security_for), and a test checks every secured operation really answers 401 without a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic.alias_generators import to_camel

from periodya.handlers import payout_search
from periodya.http import admin_user_routes as u
from periodya.http import api_models as m
from periodya.http import api_models_admin as a
from periodya.http import schemas
from periodya.http.admin_auth_routes import Login
from periodya.http.admin_payout_routes import MAX_MINUTES
from periodya.http.runbook_routes import ALERT_CODE, NoteBody, ReasonBody
from periodya.runners import JOBS

IDEMPOTENCY_KEY = {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$",
                   "description": "1-255 printable ASCII characters. The same key with the same body returns the "
                                  "first answer again; with a different body 409 IDEMPOTENCY_KEY_REUSED."}
STRIPE_SIGNATURE = {"type": "string", "description": "t=<unix>,v1=<hex HMAC-SHA256(secret, \"<t>.<raw body>\")>; "
                                                     "several v1 during a secret rotation; 300 s tolerance"}
ID_SCHEMA = {"type": "string", "pattern": r"^[A-Za-z0-9_.:-]{1,128}$"}


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunQuery(Query):
    batch: Annotated[StrictInt, Field(ge=1, le=10_000, description="items per run; the job's default if absent")] \
        | None = None
    mode: Literal["recent", "full"] | None = Field(None, description="sentinel only (default recent)")


class AlertQuery(Query):
    status: Literal["OPEN", "ACKNOWLEDGED", "RESOLVED"] | None = None
    severity: Literal["critical", "warning"] | None = None
    code: str | None = Field(None, pattern=f"^{ALERT_CODE.pattern}$", description="e.g. BALANCE_DRIFT (either case)")


# What admin_payout_routes._minutes accepts, as a pattern: 1-7 ASCII digits, at most 6 decimals, above 0 and
# at most MAX_MINUTES (5270400), so no schema-valid value is refused. A number schema would not do: a
# client or fuzzer writes 5e-324 for a small float, and plain notation is all the handler takes.
MINUTES_PATTERN = ("^(?:(?:[1-9][0-9]{0,5}|[1-4][0-9]{6}|5[01][0-9]{5}|52[0-6][0-9]{4}|5270[0-3][0-9]{2})"
                   "(?:\\.[0-9]{1,6})?|5270400|0\\.[0-9]{0,5}[1-9])$")
assert MAX_MINUTES == 5_270_400, "MINUTES_PATTERN spells out MAX_MINUTES"


class PayoutSearchQuery(Query):
    """GET /api/admin/payouts (periodya/http/admin_payout_routes.parse_payout_query): every filter given must hold."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)
    status: str | None = Field(None, description="either case", json_schema_extra={
        "enum": [*payout_search.STATUSES, *(s.lower() for s in payout_search.STATUSES)]})
    payee_id: str | None = Field(None, pattern=ID_SCHEMA["pattern"])
    provider_payout_id: str | None = Field(None, pattern=ID_SCHEMA["pattern"])
    older_than_minutes: str | None = Field(None, pattern=MINUTES_PATTERN, description=(
        f"status unchanged for longer than this many minutes: above 0, at most {MAX_MINUTES}, plain decimal "
        "notation with at most 6 decimals (no exponent)"))
    stuck: str | None = Field(None, description="either case; SENDING or SENT past its threshold (health's), "
                                                "oldest first", json_schema_extra={"enum": ["sending", "sent",
                                                                                            "SENDING", "SENT"]})
    limit: int | None = Field(None, ge=1, le=payout_search.MAX_LIMIT, description="default 50")
    cursor: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,400}$",
                               description="`nextCursor` of the previous page, with the same filters; any other "
                                           "value is 400 VALIDATION_FAILED")


class ProviderEvent(BaseModel):
    """A Stripe-format event as the provider sends it; verified on the raw bytes before it is read."""

    model_config = ConfigDict(extra="allow")
    id: Annotated[str, Field(min_length=1, max_length=255)]
    type: str = Field(description="payout.paid, payout.failed, payout.canceled, payout.updated; others are stored "
                                  "and ignored")
    data: dict[str, Any] = Field(description="`{\"object\": <the provider's payout>}`")
    created: int | None = None


@dataclass(frozen=True)
class Op:
    operation_id: str
    summary: str
    tag: str
    ok: int = 200
    response: type[BaseModel] | None = None  # None: no content (204) or not JSON (see media)
    media: str | tuple[str, ...] = "application/json"  # several: one of them, by the resource
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    path: dict[str, dict[str, Any]] = field(default_factory=dict)  # path parameter schemas (default ID_SCHEMA)
    headers: dict[str, tuple[dict[str, Any], bool]] = field(default_factory=dict)  # name -> (schema, required)
    problems: dict[int, tuple[str, ...]] = field(default_factory=dict)  # beyond the ones every route may give
    description: str = ""
    links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # OpenAPI links of the answer


_IDEM = {"Idempotency-Key": (IDEMPOTENCY_KEY, False)}
_MONEY = {409: ("INVALID_STATE", "INSUFFICIENT_FUNDS", "IDEMPOTENCY_KEY_REUSED", "CONCURRENCY_CONFLICT"),
          422: ("VALIDATION_FAILED", "LEDGER_UNBALANCED")}
_PROVIDER = ("PROVIDER_ERROR", "PROVIDER_UNAVAILABLE", "PROVIDER_REJECTED", "PROVIDER_NOT_FOUND",
             "PROVIDER_AUTH_FAILED", "PROVIDER_IDEMPOTENCY_MISMATCH")
_PAYOUT_CMD = {409: ("INVALID_STATE", "CONCURRENCY_CONFLICT"), 400: ("VALIDATION_FAILED", *_PROVIDER)}
_ANY_ID = {"id": {**ID_SCHEMA, "description": "the payoutId or the provider's payout id"}}
_ESCROW_LINKS = {op: (op, {"escrow_id": "$response.body#/escrowId"})
                 for op in ("getEscrow", "releaseEscrow", "refundEscrow", "getEscrowAudit")}
_PAYOUT_LINKS = {**{op: (op, {"payout_id": "$response.body#/payoutId"})
                    for op in ("getPayout", "getPayoutEvents", "getPayoutAudit")},
                 **{op: (op, {"id": "$response.body#/payoutId"})
                    for op in ("quarantinePayout", "forceFinalize", "getAdminPayout")},
                 "getPayeeBalances": ("getPayeeBalances", {"payee_id": "$response.body#/payeeId"})}

_USER = {"user": {"type": "string", "maxLength": 254, "pattern": f"^(usr_[0-9a-f]{{32}}|{u.EMAIL_PATTERN[1:-1]})$",
                  "description": "the user id (usr_...) or the email (either case)"}}
_USER_400 = ("VALIDATION_FAILED",)
_USER_GUARDS = {409: ("SELF_CHANGE_REFUSED", "LAST_ACTIVE_ADMIN"), 400: _USER_400}

OPERATIONS: dict[tuple[str, str], Op] = {
    ("GET", "/livez"): Op("getLivez", "The process is up", "probes", response=m.Liveness),
    ("GET", "/readyz"): Op("getReadyz", "Ready: database reachable, schema at this code's version, event reader "
                           "not stalled", "probes", response=m.Readiness, problems={503: ("NOT_READY",)}),
    ("GET", "/openapi.json"): Op("getOpenapi", "This document", "meta", media="application/json"),
    ("GET", "/docs"): Op("getDocs", "A human page rendered from /openapi.json (no external assets)", "meta",
                         media="text/html"),
    ("GET", "/docs/{asset}"): Op("getDocsAsset", "The docs page's script and style, shipped in the package", "meta",
                                 media=("text/javascript", "text/css"), problems={404: ("NOT_FOUND",)},
                                 path={"asset": {"type": "string", "enum": ["docs.js", "docs.css"]}}),
    ("POST", "/api/auth/login"): Op("login", "Open an admin session", "auth", response=m.LoginResult, body=Login,
                                    problems={429: ("TOO_MANY_ATTEMPTS",), 401: ("UNAUTHENTICATED",)}),
    ("POST", "/api/auth/logout"): Op("logout", "Revoke the session of the bearer token", "auth", ok=204,
                                     problems={401: ("UNAUTHENTICATED",)}),
    ("POST", "/api/escrows"): Op("createEscrow", "Fund an escrow (funds captured, held)", "escrows", ok=201,
                                 response=m.Escrow, body=schemas.CreateEscrow, headers=_IDEM, problems=_MONEY,
                                 links=_ESCROW_LINKS),
    ("POST", "/api/escrows/{escrow_id}/release"): Op(
        "releaseEscrow", "Release to a payee's payable, the fee to platform revenue", "escrows", response=m.Escrow,
        body=schemas.ReleaseEscrow, headers=_IDEM, problems=_MONEY),
    ("POST", "/api/escrows/{escrow_id}/refund"): Op("refundEscrow", "Refund out of the escrow", "escrows",
                                                    response=m.Escrow, body=schemas.RefundEscrow, headers=_IDEM,
                                                    problems=_MONEY),
    ("GET", "/api/escrows/{escrow_id}"): Op("getEscrow", "An escrow", "escrows", response=m.Escrow),
    ("GET", "/api/payees/{payee_id}/balances"): Op("getPayeeBalances", "A payee's available and in-flight funds",
                                                   "payees", response=m.PayeeBalances),
    ("POST", "/api/payouts"): Op(
        "createPayout", "Request a payout (funds reserved from available; group-committed)", "payouts", ok=201,
        response=m.Payout, body=schemas.CreatePayout, headers={"Idempotency-Key": (IDEMPOTENCY_KEY, True)},
        problems=_MONEY, links=_PAYOUT_LINKS),
    ("GET", "/api/payouts/{payout_id}"): Op("getPayout", "A payout", "payouts", response=m.Payout),
    ("GET", "/api/payouts/{payout_id}/events"): Op("getPayoutEvents", "A payout's whole history", "payouts",
                                                   response=m.PayoutEvents),
    ("POST", "/api/webhooks/provider"): Op(
        "receiveProviderWebhook", "A provider event, verified against Stripe-Signature, stored once", "webhooks",
        response=m.WebhookAck, body=ProviderEvent, headers={"Stripe-Signature": (STRIPE_SIGNATURE, True)},
        problems={400: ("VALIDATION_FAILED", "INVALID_SIGNATURE", "CONFIG_ERROR"), 409: ("CONCURRENCY_CONFLICT",)},
        description="400 CONFIG_ERROR while no PERIODYA_WEBHOOK_SECRET is configured: every webhook is refused."),
    ("GET", "/api/admin/ops/health"): Op("getHealth", "The runbook's health pulse", "ops", response=m.Health),
    ("POST", "/api/admin/ops/run/{job}"): Op(
        "runJob", "Run one job now (the cron runner's endpoint)", "ops", response=m.JobSummary, query=RunQuery,
        path={"job": {"type": "string", "enum": list(JOBS)}}, problems={422: ("VALIDATION_FAILED",),
                                                                        400: ("VALIDATION_FAILED", *_PROVIDER)}),
    ("GET", "/api/admin/ops/run/{job}"): Op(
        "runJobByCron", "Run one job now, for Vercel Cron (cron secret only; an admin session is 403)", "ops",
        response=m.JobSummary, query=RunQuery, path={"job": {"type": "string", "enum": list(JOBS)}},
        problems={403: ("FORBIDDEN",), 422: ("VALIDATION_FAILED",), 400: ("VALIDATION_FAILED", *_PROVIDER)}),
    ("GET", "/metrics"): Op("getMetrics", "Prometheus metrics (text exposition format)", "meta", media="text/plain",
                            problems={401: ("UNAUTHENTICATED",)},
                            description="Open while PERIODYA_METRICS_TOKEN is unset; when set, that token is "
                                        "required (and no other credential opens it)."),
    ("GET", "/api/auth/me"): Op("getMe", "Who the bearer token's session belongs to (any live session)", "auth",
                                response=a.Me),
    ("GET", "/api/admin/payouts"): Op(
        "listAdminPayouts", "Payouts, newest first (stuck ones oldest first), filtered, a page at a time", "ops",
        response=a.PayoutPage, query=PayoutSearchQuery,
        description="An unknown or repeated query parameter is 400 VALIDATION_FAILED."),
    ("GET", "/api/admin/payouts/{id}"): Op(
        "getAdminPayout", "One payout with its outbox task, timeline and ledger groups", "ops",
        response=a.AdminPayoutDetail, path=_ANY_ID),
    ("GET", "/api/admin/jobs"): Op("listJobs", "The cron table's jobs with their last runs and overdue flags", "ops",
                                   response=a.JobTable, problems={400: ("VALIDATION_FAILED",)},
                                   description="Any query parameter is 400 VALIDATION_FAILED."),
    ("GET", "/api/admin/ops/alerts"): Op("listAlerts", "Alerts, newest first (at most 200)", "ops",
                                         response=m.AlertList, query=AlertQuery,
                                         problems={422: ("VALIDATION_FAILED",)}),
    ("POST", "/api/admin/ops/alerts/{alert_id}/ack"): Op(
        "ackAlert", "Acknowledge an alert (a repeat is a no-op)", "ops", response=m.Alert, body=NoteBody,
        body_required=False, problems={409: ("INVALID_STATE", "CONCURRENCY_CONFLICT")}),
    ("POST", "/api/admin/ops/alerts/{alert_id}/resolve"): Op(
        "resolveAlert", "Resolve an alert (a repeat is a no-op)", "ops", response=m.Alert, body=NoteBody,
        body_required=False, problems={409: ("INVALID_STATE", "CONCURRENCY_CONFLICT")}),
    ("POST", "/api/admin/ops/payouts/{id}/rerun-outbox"): Op(
        "rerunOutbox", "Put the payout's outbox task back to PENDING (same idempotency key)", "ops",
        response=m.Payout, path=_ANY_ID, problems=_PAYOUT_CMD),
    ("POST", "/api/admin/ops/payouts/{id}/force-reconcile"): Op(
        "forceReconcile", "Ask the provider now and record what it holds", "ops", response=m.Payout, path=_ANY_ID,
        problems=_PAYOUT_CMD),
    ("POST", "/api/admin/ops/payouts/{id}/force-finalize"): Op(
        "forceFinalize", "Finalize when the provider says paid", "ops", response=m.Payout, path=_ANY_ID,
        problems=_PAYOUT_CMD),
    ("POST", "/api/admin/ops/payouts/{id}/quarantine"): Op(
        "quarantinePayout", "Quarantine: the outbox task fails and is never sent again", "ops", response=m.Payout,
        path=_ANY_ID, body=ReasonBody, problems={**_PAYOUT_CMD, 422: ("VALIDATION_FAILED",)}),
    ("POST", "/api/admin/ops/payouts/{id}/cancel"): Op(
        "cancelPayout", "Cancel a quarantined payout: funds back", "ops", response=m.Payout, path=_ANY_ID,
        body=ReasonBody, problems={**_PAYOUT_CMD, 422: ("VALIDATION_FAILED",)}),
    ("GET", "/api/admin/users"): Op("listAdminUsers", "Admin users with their roles, state and last login", "auth",
                                    response=a.AdminUserList, problems={400: ("VALIDATION_FAILED",)},
                                    description="ops_viewer may read it. Any query parameter is 400 "
                                                "VALIDATION_FAILED."),
    ("POST", "/api/admin/users/{user}/disable"): Op(
        "disableAdminUser", "Disable a user: every session of theirs is revoked at once", "auth",
        response=a.AdminUserChange, body=u.ChangeBody, path=_USER, problems=_USER_GUARDS,
        description="A repeat is a no-op (`changed` false). 409 SELF_CHANGE_REFUSED: the caller themselves; "
                    "409 LAST_ACTIVE_ADMIN: the last active platform_admin."),
    ("POST", "/api/admin/users/{user}/enable"): Op(
        "enableAdminUser", "Re-enable a disabled user (they log in again)", "auth", response=a.AdminUserChange,
        body=u.ChangeBody, path=_USER, problems={400: _USER_400},
        description="A repeat is a no-op (`changed` false)."),
    ("POST", "/api/admin/users/{user}/role"): Op(
        "setAdminUserRole", "Set the user's console role: platform_admin or ops_viewer", "auth",
        response=a.AdminUserChange, body=u.RoleBody, path=_USER, problems=_USER_GUARDS,
        description="Effective on the user's next request. Demoting: 409 SELF_CHANGE_REFUSED for the caller "
                    "themselves, 409 LAST_ACTIVE_ADMIN for the last active platform_admin."),
    ("POST", "/api/admin/users/{user}/reset-password"): Op(
        "resetAdminUserPassword", "Set a new password (or generate a one-time one); every session revoked",
        "auth", response=a.AdminPasswordResetResult, body=u.ResetPasswordBody, path=_USER,
        problems={400: (*_USER_400, "WEAK_PASSWORD")},
        description="Without `password`, a one-time password is generated and shown only in this answer. "
                    "The password rules are those of `periodya admin create-user`."),
    ("POST", "/api/admin/login-throttle/unlock"): Op(
        "unlockLoginThrottle", "Clear the failed logins of an email and/or a client address", "auth",
        response=a.ThrottleUnlockResult, body=u.UnlockBody,
        description="Email alone: that email from every address; address alone: every email from that address; "
                    "both: that email from that address. At least one is required (400)."),
    ("GET", "/api/admin/audit/payouts/{payout_id}"): Op(
        "getPayoutAudit", "A payout's timeline from the log (payout id or provider id)", "audit",
        response=m.PayoutHistory),
    ("GET", "/api/admin/audit/escrows/{escrow_id}"): Op("getEscrowAudit", "An escrow's timeline from the log",
                                                        "audit", response=m.EscrowHistory),
    ("GET", "/api/admin/audit/accounts/{account}"): Op(
        "getAccountAudit", "Every ledger entry on an account, with the running balance", "audit",
        response=m.AccountHistory, path={"account": {**ID_SCHEMA, "description": "e.g. payable:PAYEE"}}),
}
