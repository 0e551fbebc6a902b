"""One pass of `bench pipeline`: request N payouts over HTTP and run the jobs until all are FINALIZED."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from bench import _common as c
from bench._pipeline_parts import JOB, SERVICE_TOKEN
from periodya.deps import Deps
from periodya.eventstore import EventStore
from periodya.runners.execute import execute_job

AMOUNT = 100
FINALIZING = {"webhooks": "applied", "reconcile-pull": "paid"}  # the outcome word that means "now FINALIZED"


@dataclass
class Tally:
    runs: int = 0
    items: int = 0
    skipped: int = 0
    busy: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


@dataclass
class Pass:
    n: int
    overlap: bool = True  # requests and jobs at the same time (else one phase after the other)
    request: c.Result | None = None
    request_s: float = 0.0  # first request sent -> last answer received
    settle_s: float = 0.0  # last answer received -> last FINALIZED (sequential: the whole of phase 2)
    idle_s: float = 0.0
    jobs: dict[str, Tally] = field(default_factory=lambda: {"outbox": Tally(), "webhooks": Tally()})
    finalized: int = 0
    timed_out: bool = False
    ids: list[str] = field(default_factory=list)  # the payout ids the API answered 201 with
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_request: dict[str, float] = field(default_factory=dict)
    cpu_settle: dict[str, float] = field(default_factory=dict)

    @property
    def e2e_s(self) -> float:
        return self.request_s + self.settle_s

    @property
    def jobs_s(self) -> float:
        """The jobs' window: overlapped, from the first request; sequential, from the last answer."""
        return self.e2e_s if self.overlap else self.settle_s

    @property
    def settled(self) -> int:
        """Payouts that made it to FINALIZED: all n, unless phase 2 timed out."""
        return min(self.finalized, self.n) if self.timed_out else self.n

    @property
    def e2e_rate(self) -> float:
        return self.settled / self.e2e_s if self.e2e_s > 0 else 0.0


@dataclass
class Context:
    args: argparse.Namespace
    url: str
    payees: list[str]
    session: aiohttp.ClientSession  # keep-alive client of the API process
    store: EventStore
    deps: Deps
    stalled_deps: Deps
    meter: c.CpuMeter
    run_pool: asyncpg.Pool


async def finalized_count(pool: Any, ids: list[str]) -> int:
    return int(await pool.fetchval(
        "SELECT count(*) FROM payouts WHERE status = 'FINALIZED' AND payout_id = ANY($1::text[])", ids))


async def run_pass(ctx: Context, n: int, label: str, profiler: cProfile.Profile | None = None) -> Pass:
    """Drive n payouts over HTTP (POST /api/payouts) and run the jobs until every payout the API accepted
    is FINALIZED. --phases overlap (default): the runner loops start with the first request, as in the
    real system, where requests keep arriving while the runners work; sequential: phase 1 (all requests)
    then phase 2 (the jobs). `profiler`, when given, runs while the jobs run."""
    args = ctx.args
    result = Pass(n, overlap=args.phases == "overlap")
    requests_done = asyncio.Event()
    op = c.payout_op(ctx.session, SERVICE_TOKEN, ctx.payees, AMOUNT, result.statuses, result.errors,
                     f"{label}-{uuid.uuid4().hex[:8]}", lambda body: result.ids.append(body["payoutId"]))
    target = [n]  # the payouts to see FINALIZED: n, or what the API accepted once every answer is in
    marks: dict[str, Any] = {}

    async def requests() -> None:
        result.request = await c.drive_async(op, args.concurrency, count=n)
        marks["requested"] = time.perf_counter()
        marks["middle"] = ctx.meter.snapshot()
        target[0] = len(result.ids)
        requests_done.set()

    before = ctx.meter.snapshot()
    started = time.perf_counter()
    sender = asyncio.get_running_loop().create_task(requests())
    if not result.overlap:
        await sender
    last = [started]  # when the newest finalize came back
    done = asyncio.Event()
    jobs = result.jobs

    async def job(name: str, batch: int, deps: Deps) -> int:
        tally = jobs.setdefault(name, Tally())
        token = JOB.set(name)
        t = time.perf_counter()
        try:
            out = await execute_job(deps, name, batch=batch, trigger="bench")
        except Exception as exc:  # recorded in job_runs by execute_job; the loop keeps going like the scheduler
            tally.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            out = {"processed": 0, "skipped": 0, "outcomes": {}}
        finally:
            JOB.reset(token)
        now = time.perf_counter()
        tally.runs += 1
        tally.busy += now - t
        tally.items += out["processed"]
        tally.skipped += out["skipped"]
        tally.outcomes.update(out["outcomes"])
        finalizing = out["outcomes"].get(FINALIZING.get(name, ""), 0)
        if finalizing:
            result.finalized += finalizing
            last[0] = now
        return int(out["processed"])

    async def confirm() -> None:
        if requests_done.is_set() and await finalized_count(ctx.run_pool, result.ids) >= target[0]:
            done.set()

    batches = {"outbox": args.batch_outbox, "webhooks": args.batch_webhooks}
    progress = [time.perf_counter()]  # when any loop last did work

    async def loop(names: tuple[str, ...]) -> None:
        checked, rescued = 0.0, 0.0
        while not done.is_set():
            worked = 0
            for name in names:
                worked += await job(name, batches[name], ctx.deps)
            now = time.perf_counter()
            if result.finalized >= target[0] and requests_done.is_set():
                await confirm()
            if done.is_set():
                break
            if now - started > args.timeout:
                result.timed_out = True
                done.set()
                break
            if worked:
                progress[0] = now
                continue
            if now - checked > 0.25:  # the tallies could miss a finalize (another path); ask the table
                checked = now
                await confirm()
                if done.is_set():
                    last[0] = now
                    break
            if ("webhooks" in names and now - progress[0] > args.stall_seconds
                    and now - rescued > args.stall_seconds):
                rescued = now  # stuck: what the cron table's slower jobs would do, with short thresholds
                await job("reconcile-pull", 100, ctx.stalled_deps)
                await job("repair", 200, ctx.stalled_deps)
                continue
            t = time.perf_counter()
            await asyncio.sleep(0.002)  # the webhooks for what was just sent are still on their way
            result.idle_s += time.perf_counter() - t

    shapes = [("outbox", "webhooks")] if args.schedule == "alternate" else [("outbox",), ("webhooks",)]
    if profiler is not None:
        profiler.enable()
    try:
        await asyncio.gather(*(loop(shape) for _ in range(args.runners) for shape in shapes))
    finally:
        if profiler is not None:
            profiler.disable()
        await sender  # a timed-out run still waits for its requests' answers
    requested = marks["requested"]
    result.request_s = requested - started
    result.settle_s = max(0.0, (time.perf_counter() if result.timed_out else last[0]) - requested)
    result.cpu_request = c.CpuMeter.used(before, marks["middle"])
    result.cpu_settle = c.CpuMeter.used(marks["middle"], ctx.meter.snapshot())
    return result


def phases_text(args: argparse.Namespace) -> str:
    return ("overlap: requests and jobs at the same time (--phases sequential: one after the other)"
            if args.phases == "overlap" else "sequential: all requests, then the jobs (--phases overlap: together)")


def shape_text(args: argparse.Namespace) -> str:
    return "loop { outbox ; webhooks }" if args.schedule == "alternate" else "(loop { outbox } || loop { webhooks })"
