"""Response shapes of the admin reads behind `periodya ops` (GET /api/admin/payouts[/{id}], GET /api/admin/jobs)
and GET /api/auth/me; split from periodya/http/api_models.py (same rules: closed objects, camelCase keys).

Each model follows the handler that writes the answer field by field: handlers/payout_search.py (the payout
list and one payout with its timeline and ledger), runners/job_status.py (the job table), http/admin_me_routes.py.
"""

from __future__ import annotations

from pydantic import Field

from periodya.http.api_models import MinorUnits, OutboxTask, Payout, Shape, TimelineItem, Timestamp


class AdminOutboxTask(OutboxTask):
    updated_at: Timestamp | None = Field(description="null when the payout has no outbox task")


class AdminPayout(Payout):
    """A payout as GET /api/payouts/{id} shows it, plus when its status last changed and its task's last change."""

    outbox: AdminOutboxTask
    status_changed_at: Timestamp


class PayoutPage(Shape):
    payouts: list[AdminPayout]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class LedgerLine(Shape):
    line: int
    account: str
    currency: str
    debit: MinorUnits
    credit: MinorUnits


class LedgerGroup(Shape):
    group_id: str
    kind: str
    position: int
    recorded_at: Timestamp
    entries: list[LedgerLine]


class AdminPayoutDetail(Shape):
    payout: AdminPayout
    timeline: list[TimelineItem] = Field(description="the payout stream's events, oldest first")
    ledger: list[LedgerGroup] = Field(description="the balanced ledger groups written for this payout")
    audit: str = Field(description="the path of the full audit trail: GET /api/admin/audit/payouts/{payoutId}")


class ScheduledJob(Shape):
    job: str
    mode: str | None
    cron: str
    batch: int | None
    last_run_at: Timestamp | None
    finished_at: Timestamp | None
    ok: bool | None
    trigger: str | None
    error: str | None
    processed: int | None
    failed: int | None
    duration_ms: float | None
    expected_since: Timestamp = Field(description="the cron table's last fire time before now minus the grace")
    overdue: bool


class JobTable(Shape):
    jobs: list[ScheduledJob]
    overdue: int = Field(description="how many jobs are overdue")
    checked_at: Timestamp


class Me(Shape):
    user_id: str
    email: str
    roles: list[str]
    platform_admin: bool
    session_created_at: Timestamp
    expires_at: Timestamp


class AdminUserItem(Shape):
    """One admin user (periodya/admin/manage.py): never a password or its hash."""

    user_id: str
    email: str
    roles: list[str]
    disabled: bool
    created_at: Timestamp
    last_login_at: Timestamp | None = Field(description="when the user's newest session was opened; null: never")
    last_seen_at: Timestamp | None = Field(description="the last use of any session (written at most once a minute)")
    live_sessions: int = Field(description="sessions neither revoked nor expired (an idle one may still count)")


class AdminUserList(Shape):
    users: list[AdminUserItem] = Field(description="by email")


class AdminUserChange(Shape):
    user: AdminUserItem = Field(description="the user after the change")
    changed: bool = Field(description="false: the user was already so; nothing was written")
    sessions_revoked: int


class AdminPasswordResetResult(AdminUserChange):
    generated_password: str | None = Field(description="the one-time password generated when none was given, shown "
                                                       "only in this answer; null when the caller set one")


class ThrottleUnlockResult(Shape):
    email: str | None = Field(description="normalized (lower case)")
    address: str | None = Field(description="canonical form")
    cleared: int = Field(description="failed-login rows removed")
