"""The health pulse (runbook section 2), from indexed views only: no full scans on the hot path."""

from __future__ import annotations

from typing import Any

from periodya.deps import Deps
from periodya.handlers.views import rfc3339
from periodya.handlers.webhook_refusals import refused_since

_COUNTS = """
SELECT (SELECT count(*) FROM outbox WHERE status = 'PENDING') AS pending,
       (SELECT count(*) FROM outbox WHERE status = 'SENDING' AND updated_at < $1) AS sending_stuck,
       (SELECT count(*) FROM payouts WHERE status = 'SENT' AND status_changed_at < $2) AS sent_stuck,
       (SELECT count(*) FROM alerts WHERE status <> 'RESOLVED' AND severity = 'critical') AS critical_open,
       (SELECT count(*) FROM alerts WHERE status <> 'RESOLVED') AS open_alerts,
       (SELECT min(created_at) FROM outbox WHERE status IN ('PENDING', 'SENDING')) AS oldest_open,
       (SELECT count(*) FROM provider_events WHERE applied_seq IS NULL) AS webhooks_pending,
       (SELECT count(*) FROM events WHERE tx >= pg_snapshot_xmin(pg_current_snapshot())) AS behind_horizon"""


STUCK_LISTED = 50
KNOWN_RUNS = [("outbox", None), ("webhooks", None), ("reconcile-pull", None), ("repair", None),
              ("sentinel", "recent"), ("sentinel", "full")]
# One index probe per known job (job_runs_latest), not a sort of the whole table.
_LATEST_RUNS = """
SELECT r.* FROM unnest($1::text[], $2::text[]) AS k(job, mode)
CROSS JOIN LATERAL (SELECT job, mode, trigger, started_at, finished_at, ok, summary, error FROM job_runs j
                     WHERE j.job = k.job AND coalesce(j.mode, '') = k.mode ORDER BY started_at DESC LIMIT 1) r"""


async def counts(deps: Deps) -> Any:
    """The runbook's health fields in one row (pending, sending_stuck, sent_stuck, critical_open, open_alerts,
    oldest_open, webhooks_pending, behind_horizon): the one rule read by the health endpoint and /metrics."""
    return await deps.store.pool.fetchrow(_COUNTS, deps.minutes_ago(deps.settings.sending_stuck_minutes),
                                          deps.minutes_ago(deps.settings.sent_stuck_minutes))


async def latest_runs(deps: Deps) -> list[Any]:
    """The latest run of each known (job, mode), by one index probe each."""
    return list(await deps.store.pool.fetch(_LATEST_RUNS, [j for j, _ in KNOWN_RUNS], [m or "" for _, m in KNOWN_RUNS]))


# The alerts_open partial index (code, severity) WHERE status <> 'RESOLVED' answers this alone.
_OPEN_BY_CODE = "SELECT code, severity, count(*) AS n FROM alerts WHERE status <> 'RESOLVED' GROUP BY code, severity"
# A catch-up reader's lag in positions: the log's head (the events primary key) minus its checkpoint.
_CHECKPOINT_LAG = "SELECT name, greatest((SELECT max(seq) FROM events) - seq, 0) AS lag FROM checkpoints"


async def open_alerts_by_code(deps: Deps) -> list[Any]:
    return list(await deps.store.pool.fetch(_OPEN_BY_CODE))


async def checkpoint_lag(deps: Deps) -> list[Any]:
    return list(await deps.store.pool.fetch(_CHECKPOINT_LAG))


async def health(deps: Deps) -> dict[str, Any]:
    """`status` is ok only when the runbook's expectations hold: no stuck work, no open critical alert."""
    now = deps.clock()
    pool = deps.store.pool
    c = await counts(deps)
    missing = await pool.fetch(
        "SELECT a.alert_id, a.subject, a.raised_at, a.details->>'providerPayoutId' AS provider_payout_id "
        "FROM alerts a WHERE a.code = 'FINALIZE_MISSING' AND a.status <> 'RESOLVED' ORDER BY a.raised_at")
    jobs = await latest_runs(deps)
    stuck_sending = await pool.fetch(
        "SELECT payout_id, updated_at FROM outbox WHERE status = 'SENDING' AND updated_at < $1 "
        "ORDER BY updated_at LIMIT $2", deps.minutes_ago(deps.settings.sending_stuck_minutes), STUCK_LISTED)
    stuck_sent = await pool.fetch(
        "SELECT payout_id, provider_payout_id, status_changed_at FROM payouts WHERE status = 'SENT' "
        "AND status_changed_at < $1 ORDER BY status_changed_at LIMIT $2",
        deps.minutes_ago(deps.settings.sent_stuck_minutes), STUCK_LISTED)
    oldest = c["oldest_open"]
    status = "critical" if c["critical_open"] else (
        "degraded" if c["sending_stuck"] or c["sent_stuck"] else "ok")
    return {
        "status": status,
        "payoutOutboxPending": c["pending"],
        "payoutOutboxSendingStuck": c["sending_stuck"],
        "providerPayoutSentStuck10m": c["sent_stuck"],
        "integrityAlertsCriticalOpen": c["critical_open"],
        "alertsOpen": c["open_alerts"],
        "maxOutboxAgeMinutes": round((now - oldest).total_seconds() / 60, 2) if oldest else 0,
        "webhooksPending": c["webhooks_pending"],
        "webhooksRefused": (await refused_since(pool, deps.minutes_ago(60)))[0],  # last hour, every process
        "readerLag": {"eventsBehindHorizon": c["behind_horizon"]},
        "sendingStuck": [{"payoutId": r["payout_id"], "since": rfc3339(r["updated_at"])} for r in stuck_sending],
        "sentStuck": [{"payoutId": r["payout_id"], "providerPayoutId": r["provider_payout_id"],
                       "since": rfc3339(r["status_changed_at"])} for r in stuck_sent],
        "finalizeMissing": [{"payoutId": r["subject"], "providerPayoutId": r["provider_payout_id"],
                             "alertId": r["alert_id"], "since": rfc3339(r["raised_at"])} for r in missing],
        "jobs": {(r["job"] + (f":{r['mode']}" if r["mode"] else "")): {
            "lastRunAt": rfc3339(r["started_at"]), "finishedAt": rfc3339(r["finished_at"]), "trigger": r["trigger"],
            "ok": r["ok"], "durationMs": (r["summary"] or {}).get("durationMs"), "error": r["error"],
            "processed": (r["summary"] or {}).get("processed")} for r in jobs},
        "thresholds": {"sendingStuckMinutes": deps.settings.sending_stuck_minutes,
                       "sentStuckMinutes": deps.settings.sent_stuck_minutes,
                       "finalizeGraceMinutes": deps.settings.finalize_grace_minutes},
        "checkedAt": rfc3339(now),
    }


async def list_alerts(deps: Deps, status: str | None, severity: str | None, code: str | None,
                      limit: int = 200) -> list[dict[str, Any]]:
    rows = await deps.store.pool.fetch(
        "SELECT * FROM alerts WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR severity = $2) "
        "AND ($3::text IS NULL OR code = $3) ORDER BY raised_at DESC LIMIT $4", status, severity, code, limit)
    return [alert_json(r) for r in rows]


def alert_json(r: Any) -> dict[str, Any]:
    return {"alertId": r["alert_id"], "code": r["code"], "severity": r["severity"], "status": r["status"],
            "subject": r["subject"], "details": r["details"], "remedy": r["remedy"],
            "raisedAt": rfc3339(r["raised_at"]), "ackedAt": rfc3339(r["acked_at"]), "ackedBy": r["acked_by"],
            "resolvedAt": rfc3339(r["resolved_at"]), "resolvedBy": r["resolved_by"],
            "note": r["resolve_note"] or r["ack_note"], "automatic": r["automatic"]}
