"""Run one job by name and record the run, for every caller: scheduler, run endpoint, CLI."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import orjson

from periodya import metrics
from periodya.deps import Deps
from periodya.domain.errors import ValidationFailed
from periodya.logging import get_logger
from periodya.runners import JOBS

log = get_logger("periodya.jobs")
RETENTION = timedelta(days=14)
"""Job runs are operational records (health's per-job status), not the audit log: kept two weeks."""


def check(name: str, batch: int | None) -> int:
    if name not in JOBS:
        raise ValidationFailed(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    if batch is not None and not 1 <= batch <= 10_000:
        raise ValidationFailed("batch must be between 1 and 10000")
    return batch if batch is not None else JOBS[name][1]


async def execute_job(deps: Deps, name: str, *, batch: int | None = None, mode: str | None = None,
                      trigger: str = "cli") -> dict[str, Any]:
    """Run job `name` once; the run and its outcome are recorded in job_runs (a failure too)."""
    size = check(name, batch)
    job = JOBS[name][0]
    pool = deps.store.pool
    started = time.perf_counter()
    run_id = await pool.fetchval(
        "INSERT INTO job_runs (job, mode, trigger, started_at) VALUES ($1, $2, $3, $4) RETURNING run_id",
        name, mode, trigger, deps.clock())
    try:
        summary = (await job(deps, size) if mode is None else await job(deps, size, mode=mode))  # type: ignore[call-arg]
    except Exception as exc:
        await pool.execute("UPDATE job_runs SET finished_at = $2, ok = false, error = $3 WHERE run_id = $1",
                           run_id, deps.clock(), f"{type(exc).__name__}: {exc}"[:1000])
        log.exception("job_failed", job=name, trigger=trigger)
        metrics.job_finished(name, mode, "error", time.perf_counter() - started, {})
        raise
    out = summary.as_json()
    await pool.execute("DELETE FROM job_runs WHERE job = $1 AND started_at < $2", name, deps.clock() - RETENTION)
    await pool.execute("UPDATE job_runs SET finished_at = $2, ok = $3, summary = $4::text::jsonb WHERE run_id = $1",
                       run_id, deps.clock(), out["failed"] == 0, orjson.dumps(out).decode())
    metrics.job_finished(name, mode, "ok" if out["failed"] == 0 else "item_failures", time.perf_counter() - started,
                         out)
    log.info("job_finished", **{k: v for k, v in out.items() if k != "outcomes"}, trigger=trigger)
    return out
