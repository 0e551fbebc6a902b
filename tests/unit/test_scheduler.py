"""The scheduler: the runbook's cron table as written (parsed from ../shared/runbook.md), batch sizes from
configuration, a job still running is not started twice, a failing job does not stop the others. Time is
a clock the test sets (`Scheduler.tick(now)`), never a wall-clock wait."""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from periodya.runners.scheduler import Entry, Scheduler, schedule

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BATCHES = {"outbox": 50, "webhooks": 200, "reconcile-pull": 100, "repair": 200}
START = datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC)  # a Sunday, 30 s past midnight


def runbook_path() -> Path | None:
    """../shared/runbook.md beside the checkout (CI, the main repo) or beside the worktrees' parent."""
    candidates = [Path(os.environ["PERIODYA_RUNBOOK"])] if os.environ.get("PERIODYA_RUNBOOK") else []
    candidates += [ROOT.parent / "shared" / "runbook.md", ROOT.parent.parent / "shared" / "runbook.md"]
    return next((c for c in candidates if c.is_file()), None)


def runbook_table() -> set[tuple[str, str, int | None, str | None]]:
    """(job, cron, batch, mode) for every row of the runbook's cron table (section 1)."""
    path = runbook_path()
    if path is None:
        pytest.skip("../shared/runbook.md is not beside this checkout")
    names = {"payout outbox": "outbox", "webhook process": "webhooks"}
    rows = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[2].startswith("`"):
            continue
        job_name, _freq, cron, endpoint, size = cells
        match = re.search(r"/api/admin/ops/run/([a-z-]+)", endpoint)
        job = match.group(1) if match else names[job_name.lower()]
        batch = int(size) if size.isdigit() else None
        mode = None if size.isdigit() else {"recent": "recent", "full": "full"}[size.lower()]
        rows.add((job, cron.strip("`"), batch, mode))
    return rows


def test_the_cron_table_is_the_runbooks_as_written() -> None:
    table = runbook_table()
    assert len(table) == 6, table
    assert {(e.job, e.cron, e.batch, e.mode) for e in schedule({})} == table


def test_batch_sizes_come_from_configuration() -> None:
    env = {"PERIODYA_BATCH_OUTBOX": "7", "PERIODYA_BATCH_WEBHOOKS": "11", "PERIODYA_BATCH_RECONCILE_PULL": "13",
           "PERIODYA_BATCH_REPAIR": "17"}
    batches = {e.job: e.batch for e in schedule(env) if e.job != "sentinel"}
    assert batches == {"outbox": 7, "webhooks": 11, "reconcile-pull": 13, "repair": 17}
    for bad in ("0", "-3", "ten", "", "1.5"):  # not a positive integer: the runbook's default
        batches = {e.job: e.batch for e in schedule({"PERIODYA_BATCH_OUTBOX": bad})}
        assert batches["outbox"] == 50, bad
    assert {e.job: e.batch for e in schedule({}) if e.job != "sentinel"} == DEFAULT_BATCHES
    assert schedule({"PERIODYA_BATCH_OUTBOX": "1"})[0].batch == 1


def test_entries_are_keyed_by_job_and_mode() -> None:
    assert [e.key for e in schedule({})] == ["outbox:", "webhooks:", "reconcile-pull:", "repair:",
                                            "sentinel:recent", "sentinel:full"]


class Recorder:
    """A job runner for the scheduler that records (job key, tick time) and can hold or fail a job."""

    def __init__(self) -> None:
        self.now = START
        self.started: list[tuple[str, datetime]] = []
        self.hold: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()

    async def __call__(self, e: Entry) -> object:
        self.started.append((e.key, self.now))
        if e.key in self.hold:
            await self.hold[e.key].wait()
        if e.key in self.fail:
            raise RuntimeError(f"{e.key} failed")
        return e.key


async def _settle(s: Scheduler) -> None:
    """Let the tasks started by a tick run to their first wait (or their end)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def _run(s: Scheduler, rec: Recorder, until: datetime, step: timedelta = timedelta(minutes=1)) -> None:
    while rec.now + step <= until:
        rec.now += step
        s.tick(rec.now)
        await _settle(s)


async def test_a_day_of_ticks_fires_each_entry_at_its_cron_times() -> None:
    rec = Recorder()
    s = Scheduler(schedule({}), START, rec)
    assert s.next_due() == START.replace(minute=1, second=0)
    await _run(s, rec, START + timedelta(days=1))
    counts = Counter(key for key, _ in rec.started)
    assert counts == {"outbox:": 1440, "webhooks:": 1440, "reconcile-pull:": 288, "repair:": 96,
                      "sentinel:recent": 24, "sentinel:full": 1}
    times = {key: [t for k, t in rec.started if k == key] for key in counts}
    assert all(t.minute % 5 == 0 for t in times["reconcile-pull:"])
    assert all(t.minute % 15 == 0 for t in times["repair:"])
    assert all(t.minute == 0 for t in times["sentinel:recent"])
    assert [t.strftime("%H:%M") for t in times["sentinel:full"]] == ["02:00"]
    assert times["outbox:"][:2] == [START + timedelta(minutes=1), START + timedelta(minutes=2)]  # ticks at :30
    s.cancel()


async def test_a_tick_between_cron_times_starts_nothing() -> None:
    rec = Recorder()
    s = Scheduler(schedule({}), START, rec)
    assert s.tick(START + timedelta(seconds=20)) == []
    started = s.tick(START + timedelta(seconds=30))  # 00:01:00: the every-minute jobs
    assert [e.key for e in started] == ["outbox:", "webhooks:"]
    await _settle(s)
    assert s.tick(START + timedelta(seconds=40)) == []  # the same minute again: nothing new
    s.cancel()


async def test_a_job_still_running_is_not_started_twice() -> None:
    rec = Recorder()
    rec.hold["outbox:"] = asyncio.Event()
    s = Scheduler(schedule({}), START, rec)
    await _run(s, rec, START + timedelta(minutes=3))  # 00:01, 00:02, 00:03: outbox still in its first run
    outbox_runs = [t for k, t in rec.started if k == "outbox:"]
    assert outbox_runs == [START + timedelta(minutes=1)]
    assert Counter(k for k, _ in rec.started)["webhooks:"] == 3  # the others go on meanwhile
    rec.hold["outbox:"].set()
    await _settle(s)
    await _run(s, rec, rec.now + timedelta(minutes=1))  # finished: the next due time starts it again
    assert [t for k, t in rec.started if k == "outbox:"] == [START + timedelta(minutes=1),
                                                              START + timedelta(minutes=4)]
    assert s.next_at["outbox:"] == START.replace(minute=5, second=0)  # skipped times are not made up
    s.cancel()


async def test_a_failing_job_does_not_stop_the_others() -> None:
    rec = Recorder()
    rec.fail.add("outbox:")
    s = Scheduler(schedule({}), START, rec)
    await _run(s, rec, START + timedelta(minutes=5))
    counts = Counter(k for k, _ in rec.started)
    assert counts["outbox:"] == 5 and counts["webhooks:"] == 5 and counts["reconcile-pull:"] == 1
    assert all(t.done() and t.result() in (None, "webhooks:", "reconcile-pull:") for t in s.running.values())
    assert s.running["outbox:"].result() is None  # the failure was swallowed, not raised into the loop
    s.cancel()


async def test_cancel_stops_the_running_jobs() -> None:
    rec = Recorder()
    rec.hold["outbox:"] = asyncio.Event()
    s = Scheduler(schedule({}), START, rec)
    await _run(s, rec, START + timedelta(minutes=1))
    task = s.running["outbox:"]
    s.cancel()
    await asyncio.sleep(0)
    assert task.cancelled()


async def test_every_due_entry_starts_whatever_its_place_in_the_table() -> None:
    """An entry that is not due does not hide the due ones after it."""
    rec = Recorder()
    table = [Entry("repair", "*/15 * * * *", 200), Entry("outbox", "* * * * *", 50)]
    s = Scheduler(table, START, rec)
    await _run(s, rec, START + timedelta(minutes=2))
    assert [k for k, _ in rec.started] == ["outbox:", "outbox:"]
    s.cancel()


async def test_a_skipped_run_is_logged() -> None:
    from structlog.testing import capture_logs

    rec = Recorder()
    rec.hold["outbox:"] = asyncio.Event()
    rec.hold["sentinel:recent"] = asyncio.Event()
    s = Scheduler(schedule({}), START, rec)
    with capture_logs() as logs:
        await _run(s, rec, START + timedelta(hours=2))
    skipped = [(e["job"], e["mode"]) for e in logs if e["event"] == "job_skipped_still_running"]
    assert skipped.count(("outbox", None)) == 119 and skipped.count(("sentinel", "recent")) == 1
    assert len(skipped) == 120
    s.cancel()


async def test_a_failed_run_is_logged() -> None:
    from structlog.testing import capture_logs

    rec = Recorder()
    rec.fail.add("sentinel:recent")
    s = Scheduler(schedule({}), START, rec)
    with capture_logs() as logs:
        await _run(s, rec, START + timedelta(hours=1))
    failed = [(e["job"], e["mode"]) for e in logs if e["event"] == "scheduled_job_failed"]
    assert failed == [("sentinel", "recent")]
    s.cancel()


def test_batch_sizes_default_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERIODYA_BATCH_REPAIR", "9")
    assert {e.job: e.batch for e in schedule()}["repair"] == 9
