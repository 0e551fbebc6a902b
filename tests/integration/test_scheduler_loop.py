"""The scheduler's loop with the real jobs: run_forever against a clock the test controls (no wall-clock
wait: the loop's next wait is ended by `stop`), the batch size taken from configuration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from periodya.config import Settings
from periodya.runners.scheduler import run_forever, schedule
from tests.integration.pipeline import live_pipeline, wait_for


async def test_run_forever_fires_the_due_job_with_the_configured_batch(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        for n in range(3):
            await p.request(f"po-{n}", "p1", 100)
        entries = [e for e in schedule({"PERIODYA_BATCH_OUTBOX": "2"}) if e.job == "outbox"]
        assert [e.batch for e in entries] == [2]
        times = iter([datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC)])  # start; then 00:01:00, the due time, forever
        due = datetime(2026, 3, 1, 0, 1, tzinfo=UTC)
        stop = asyncio.Event()
        loop = asyncio.create_task(run_forever(p.deps, entries, stop, clock=lambda: next(times, due)))
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM job_runs WHERE finished_at IS NOT NULL"))
        stop.set()
        await loop
        [run] = await pool.fetch("SELECT job, trigger, ok, summary FROM job_runs")
        assert (run["job"], run["trigger"], run["ok"]) == ("outbox", "cron", True)
        assert run["summary"]["processed"] == 2  # the configured batch, not the runbook's 50
        assert await p.status_counts() == {"SENT": 2, "REQUESTED": 1}
