"""A realistic log with every event type, written by the real system: escrows funded, released and
refunded; payouts requested, sent, failed to send, abandoned, requeued, paid, finalized, failed after
paid (reversed), quarantined and cancelled; provider webhooks received over HTTP and applied by the
webhooks job; alerts raised by the outbox and the sentinel, acknowledged and resolved by an admin."""

from __future__ import annotations

import asyncpg

import periodya.admin.users
import periodya.audit.daily_digests  # registers LogDigestRecorded
from periodya.config import Settings
from periodya.domain import escrow
from periodya.event_registry import REGISTRY
from periodya.handlers import platform
from periodya.handlers.unit_of_work import run_command
from periodya.runners import outbox, sentinel, webhooks
from tests.integration.pipeline import META, Pipeline, wait_for


def every_type() -> frozenset[str]:
    """Every stored event type the application registers (the audit's and the admin's too)."""
    assert periodya.admin.users.AdminUserCreated.event_type in REGISTRY._models
    return frozenset(REGISTRY._models)


async def _admin_ok(p: Pipeline, method: str, path: str, **kwargs: object) -> dict:  # type: ignore[type-arg]
    status, body = await p.admin(method, path, **kwargs)
    assert status == 200, (path, status, body)
    return body  # type: ignore[no-any-return]


async def build_full_log(p: Pipeline, settings: Settings, payouts: int = 6) -> None:
    """Write the log through the pipeline `p` (live_pipeline, autoSettle off); asserts every type is in it."""
    pool: asyncpg.Pool = p.store.pool
    for i in range(3):
        await p.fund_payee(f"fl-p{i}", 100_000)
    cmd = escrow.FundEscrow("fl-refunded", 5_000, "USD")
    await run_command(p.store, META, lambda u: platform.fund_escrow(u, cmd))
    await run_command(p.store, META, lambda u: platform.refund_escrow(u, escrow.RefundEscrow("fl-refunded", 2_000)))

    await p.request("fl-retry", "fl-p0", 700)  # the provider errors: SendFailed, later requeued and sent
    await p.sim_config(errorRate=1.0)
    await outbox.run(p.deps)
    await p.sim_config(errorRate=0.0, rejectCreateRate=1.0)
    await p.request("fl-refused", "fl-p1", 800)  # the provider refuses it: abandoned, funds back, alert
    await outbox.run(p.deps)
    await p.sim_config(rejectCreateRate=0.0)
    await _admin_ok(p, "POST", "/api/admin/ops/payouts/fl-retry/rerun-outbox")
    await p.request("fl-quarantined", "fl-p2", 900)
    await _admin_ok(p, "POST", "/api/admin/ops/payouts/fl-quarantined/quarantine", json={"reason": "drill"})
    await _admin_ok(p, "POST", "/api/admin/ops/payouts/fl-quarantined/cancel", json={"reason": "drill"})

    ids = [f"fl-po{i}" for i in range(payouts)]
    for i, pid in enumerate(ids):
        await p.request(pid, f"fl-p{i % 3}", 1_000 + i)
    await outbox.run(p.deps)
    sent = {r["payout_id"]: r["provider_payout_id"] for r in await pool.fetch(
        "SELECT payout_id, provider_payout_id FROM payouts WHERE status = 'SENT'")}
    assert set(ids) | {"fl-retry"} <= set(sent), sent
    _stuck, *settled = sorted(sent)
    for n, pid in enumerate(settled):
        await p.settle(sent[pid], "failed" if n % 3 == 2 else "paid")
    await p.settle(sent[settled[0]], "failed")  # paid, then failed: the finalized payout is reversed
    expected = len(settled) + 1
    await wait_for(lambda: pool.fetchval("SELECT count(*) >= $1 FROM provider_events", expected))
    while (await webhooks.run(p.deps)).processed:
        pass
    assert await pool.fetchval("SELECT count(*) FROM provider_events WHERE applied_seq IS NOT NULL") == expected

    p.advance(settings.sent_stuck_minutes + 1)
    await sentinel.run(p.deps, mode="recent")  # SENT_STUCK for `stuck`
    alerts = await _admin_ok(p, "GET", "/api/admin/ops/alerts?code=SENT_STUCK")
    [alert] = alerts["alerts"]
    await _admin_ok(p, "POST", f"/api/admin/ops/alerts/{alert['alertId']}/ack", json={"note": "looking"})
    await _admin_ok(p, "POST", f"/api/admin/ops/alerts/{alert['alertId']}/resolve", json={"note": "seen"})
    await periodya.admin.users.create_user(p.store, "fl-leaver@example.com", "a long enough password", meta=META)
    await periodya.admin.users.revoke_sessions(p.store, "fl-leaver@example.com", meta=META)  # AdminSessionsRevoked
    leaver, why = "/api/admin/users/fl-leaver@example.com", {"reason": "drill"}
    await _admin_ok(p, "POST", f"{leaver}/role", json={"role": "ops_viewer", **why})  # AdminUserRoleChanged
    await _admin_ok(p, "POST", f"{leaver}/reset-password", json=why)  # AdminPasswordReset
    await _admin_ok(p, "POST", f"{leaver}/disable", json=why)  # AdminUserDisabled
    await _admin_ok(p, "POST", f"{leaver}/enable", json=why)  # AdminUserEnabled
    await _admin_ok(p, "POST", "/api/admin/login-throttle/unlock",  # LoginThrottleUnlocked
                    json={"email": "fl-leaver@example.com", **why})
    p.advance(24 * 60)  # today is closed: the daily sentinel records its digest
    assert (await sentinel.run(p.deps, mode="full")).details.get("digest:recorded"), "no digest recorded"
    types = {r["event_type"] for r in await pool.fetch("SELECT DISTINCT event_type FROM events")}
    assert types == every_type(), f"not written: {sorted(every_type() - types)}"
