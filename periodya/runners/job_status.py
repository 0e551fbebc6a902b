"""Each job of the runbook's cron table with its last run and whether it is overdue (GET /api/admin/jobs).

A job is overdue when it has not started since the cron table's last fire time before `now - GRACE`
(or never ran): a run may start a little late or take a while without being overdue, but a job whose
scheduler stopped shows it within one period plus the grace. Runs by any trigger count (scheduler,
run endpoint, CLI): health's `jobs` reports the same last runs, without the schedule.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
from croniter import croniter

from periodya.handlers.views import rfc3339
from periodya.runners.scheduler import Entry, schedule

GRACE = timedelta(minutes=2)
# One index probe per scheduled job (job_runs_latest), as health does.
LATEST = """
SELECT k.i, r.* FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(job, mode, i)
LEFT JOIN LATERAL (SELECT trigger, started_at, finished_at, ok, summary, error FROM job_runs j
                    WHERE j.job = k.job AND coalesce(j.mode, '') = k.mode ORDER BY started_at DESC LIMIT 1) r ON true
ORDER BY k.i"""


def expected_since(entry: Entry, now: datetime) -> datetime:
    """The last time the cron table fired this job, at or before `now - GRACE`."""
    fired: datetime = croniter(entry.cron, now - GRACE).get_prev(datetime)
    return fired


async def job_status(pool: asyncpg.Pool, now: datetime) -> dict[str, Any]:
    entries = schedule()
    rows = await pool.fetch(LATEST, [e.job for e in entries], [e.mode or "" for e in entries])
    jobs = []
    for entry, r in zip(entries, rows, strict=True):
        since = expected_since(entry, now)
        summary = r["summary"] or {}
        jobs.append({
            "job": entry.job, "mode": entry.mode, "cron": entry.cron, "batch": entry.batch,
            "lastRunAt": rfc3339(r["started_at"]), "finishedAt": rfc3339(r["finished_at"]), "ok": r["ok"],
            "trigger": r["trigger"], "error": r["error"], "processed": summary.get("processed"),
            "failed": summary.get("failed"), "durationMs": summary.get("durationMs"),
            "expectedSince": rfc3339(since), "overdue": r["started_at"] is None or r["started_at"] < since})
    return {"jobs": jobs, "overdue": sum(j["overdue"] for j in jobs), "checkedAt": rfc3339(now)}
