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
        entries = [e for e in schedule({"PERIODYA_BATCH_OUTBOX": "2"}) if e.key in ("outbox:", "sentinel:recent")]
        assert [e.batch for e in entries] == [2, None]
        times = iter([datetime(2026, 3, 1, 0, 59, 30, tzinfo=UTC)])  # start; then 01:00:00, the due time, forever
        due = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
        stop = asyncio.Event()
        loop = asyncio.create_task(run_forever(p.deps, entries, stop, clock=lambda: next(times, due)))
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 2 FROM job_runs WHERE finished_at IS NOT NULL"))
        stop.set()
        await loop
        [run, sentinel] = await pool.fetch("SELECT job, mode, trigger, ok, summary FROM job_runs ORDER BY job")
        assert (run["job"], run["mode"], run["trigger"], run["ok"]) == ("outbox", None, "cron", True)
        assert (sentinel["job"], sentinel["mode"], sentinel["trigger"]) == ("sentinel", "recent", "cron")
        assert sentinel["summary"]["job"] == "sentinel:recent"
        assert run["summary"]["processed"] == 2  # the configured batch, not the runbook's 50
        assert await p.status_counts() == {"SENT": 2, "REQUESTED": 1}


async def test_stopping_the_loop_cancels_a_job_still_running(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, sim={"latencyMs": 60_000}) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-0", "p1", 100)
        entries = [e for e in schedule({}) if e.job == "outbox"]
        times = iter([datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC)])
        due = datetime(2026, 3, 1, 0, 1, tzinfo=UTC)
        stop = asyncio.Event()
        before = asyncio.all_tasks()
        loop = asyncio.create_task(run_forever(p.deps, entries, stop, clock=lambda: next(times, due)))
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM payouts WHERE status = 'SENDING'"))
        jobs = [t for t in asyncio.all_tasks() - before if "_guarded" in getattr(t.get_coro(), "__qualname__", "")]
        stop.set()  # the send is waiting on the provider
        await loop
        for _ in range(5):  # let the cancellation land
            await asyncio.sleep(0)
        assert len(jobs) == 1 and jobs[0].done(), jobs
        assert await pool.fetchval("SELECT finished_at FROM job_runs") is None  # cut off, not finished
