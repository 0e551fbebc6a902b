"""The built-in scheduler: the runbook's cron table (section 1), run in-process.

Each entry fires on its cron expression (croniter, UTC). A job whose previous run is still going when
it fires again is skipped, not stacked; overlapping runs would be safe anyway (items are claimed with
try-locks), but stacking them only adds load. Batch sizes come from configuration.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from periodya.deps import Deps
from periodya.logging import get_logger
from periodya.runners.execute import execute_job

log = get_logger("periodya.scheduler")


@dataclass(frozen=True)
class Entry:
    job: str
    cron: str
    batch: int | None = None
    mode: str | None = None

    @property
    def key(self) -> str:
        return f"{self.job}:{self.mode or ''}"


def schedule(env: dict[str, str] | None = None) -> list[Entry]:
    """The runbook's table; PERIODYA_BATCH_<JOB> (e.g. PERIODYA_BATCH_OUTBOX=50) overrides a batch."""
    env = dict(os.environ if env is None else env)

    def batch(job: str, default: int) -> int:
        raw = env.get(f"PERIODYA_BATCH_{job.upper().replace('-', '_')}")
        return int(raw) if raw and raw.isdigit() and int(raw) > 0 else default

    table = [Entry("outbox", "* * * * *", batch("outbox", 50)),
             Entry("webhooks", "* * * * *", batch("webhooks", 200)),
             Entry("reconcile-pull", "*/5 * * * *", batch("reconcile-pull", 100)),
             Entry("repair", "*/15 * * * *", batch("repair", 200))]
    from periodya.runners import JOBS

    if "sentinel" in JOBS:
        table += [Entry("sentinel", "0 * * * *", mode="recent"), Entry("sentinel", "0 2 * * *", mode="full")]
    return table


class Scheduler:
    """The cron table's state, driven by whatever clock the caller reads: `tick(now)` starts every entry
    due at `now` (unless its previous run is still going) and schedules its next time. `run_job` runs one
    entry; an exception from it is logged and swallowed, so one failing job never stops the others."""

    def __init__(self, entries: list[Entry], start: datetime,
                 run_job: Callable[[Entry], Awaitable[object]]) -> None:
        self.entries = entries
        self.next_at: dict[str, datetime] = {e.key: croniter(e.cron, start).get_next(datetime) for e in entries}
        self.running: dict[str, asyncio.Task[object]] = {}
        self._run_job = run_job

    def next_due(self) -> datetime:
        return min(self.next_at.values())

    def tick(self, now: datetime) -> list[Entry]:
        """Start the entries due at `now`; returns those started (skipped ones are logged)."""
        started = []
        for e in self.entries:
            if self.next_at[e.key] > now:
                continue
            self.next_at[e.key] = croniter(e.cron, now).get_next(datetime)
            if e.key in self.running and not self.running[e.key].done():
                log.warning("job_skipped_still_running", job=e.job, mode=e.mode)
                continue
            self.running[e.key] = asyncio.create_task(self._guarded(e))
            started.append(e)
        return started

    async def _guarded(self, e: Entry) -> object:
        try:
            return await self._run_job(e)
        except Exception:  # recorded in job_runs and logged by execute_job; the scheduler keeps going
            log.exception("scheduled_job_failed", job=e.job, mode=e.mode)
            return None

    def cancel(self) -> None:
        for task in self.running.values():
            task.cancel()


async def run_forever(deps: Deps, entries: list[Entry], stop: asyncio.Event, *,
                      clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    async def run_job(e: Entry) -> object:
        return await execute_job(deps, e.job, batch=e.batch, mode=e.mode, trigger="cron")

    scheduler = Scheduler(entries, clock(), run_job)
    while not stop.is_set():
        delay = max(0.0, (scheduler.next_due() - clock()).total_seconds())
        try:
            await asyncio.wait_for(stop.wait(), delay)
            break
        except TimeoutError:
            pass
        scheduler.tick(clock())
    scheduler.cancel()
