"""The built-in scheduler: the runbook's cron table (section 1), run in-process.

Each entry fires on its cron expression (croniter, UTC). A job whose previous run is still going when
it fires again is skipped, not stacked; overlapping runs would be safe anyway (items are claimed with
try-locks), but stacking them only adds load. Batch sizes come from configuration.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from periodya.logging import get_logger
from periodya.runners.base import Deps
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


async def run_forever(deps: Deps, entries: list[Entry], stop: asyncio.Event) -> None:
    now = datetime.now(UTC)
    nxt = {e.key: croniter(e.cron, now).get_next(datetime) for e in entries}
    running: dict[str, asyncio.Task[object]] = {}
    while not stop.is_set():
        due_at = min(nxt.values())
        delay = max(0.0, (due_at - datetime.now(UTC)).total_seconds())
        try:
            await asyncio.wait_for(stop.wait(), delay)
            break
        except TimeoutError:
            pass
        now = datetime.now(UTC)
        for e in entries:
            if nxt[e.key] > now:
                continue
            nxt[e.key] = croniter(e.cron, now).get_next(datetime)
            if e.key in running and not running[e.key].done():
                log.warning("job_skipped_still_running", job=e.job, mode=e.mode)
                continue
            running[e.key] = asyncio.create_task(_guarded(deps, e))
    for task in running.values():
        task.cancel()


async def _guarded(deps: Deps, e: Entry) -> object:
    try:
        return await execute_job(deps, e.job, batch=e.batch, mode=e.mode, trigger="cron")
    except Exception:  # recorded in job_runs and logged by execute_job; the scheduler keeps going
        return None
