"""Platform command throughput: POST /api/payouts over HTTP vs the raw EventStore.append line.

One run, one fresh scratch database (dropped afterwards):
  1. the API server runs in a SEPARATE PROCESS (bench/_commands_server.py, wired exactly like
     `periodya serve`: periodya.deps.open_pool + create_app + AppRunner(access_log=None), log level
     info), so the load generator and the server do not share a core or an event loop;
  2. payees are credited through the API (POST /api/escrows, then .../release);
  3. a keep-alive aiohttp client drives POST /api/payouts at concurrency 32 (unique Idempotency-Key per
     request, payees round-robin) for --seconds, then the same against ONE hot payee (every request
     serialises on that payee's account lock);
  4. the floor/peer line: EventStore.append of one event per append at the same concurrency, from this
     process, on the same database (bench/append.py's operation);
  5. targets (>= 1,000 payouts/s, p99 < 50 ms) as PASS/MISS (never a non-zero exit for a miss); on a
     miss, or with --profile, a second instrumented server shows where a request's time goes: pool
     wait, SQL round trips per statement (a timing asyncpg Connection subclass and pool wrapper, bench
     code only: bench/_common.py), Python CPU (cProfile, by package), then findings and suggestions.
CPU use of client, server and PostgreSQL comes from /proc; other work on the machine is reported, since
it skews every figure.

The server runs POST /api/payouts through its group commit (periodya/handlers/payout_batch.py): the
SQL of a payout runs in a batch task shared by the requests queued together, not in the request's own
task, so the per-request timing charges a request its wait for the batch, and SQL statements per payout
come from the per-statement totals (the mean batch size is payouts per COMMIT).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import _common as c
from bench._commands_server import TOKEN, Server
from periodya import db
from periodya.errors import ConfigError
from periodya.eventstore import EventStore
from periodya.handlers.payout_batch import MAX_BATCH, MAX_RUNNING

TARGET_RPS, TARGET_P99_MS = 1_000, 50.0
AMOUNT = 100
CREDIT = 10**12  # per payee: never the limit during a run
SERVE_POOL_DEFAULT = "periodya serve's default (db.connect_pool: min 2, max 10)"


@dataclass
class Run:
    result: c.Result
    statuses: Counter[int]
    errors: Counter[str]
    cpu: dict[str, float]  # cores used (CPU seconds per wall second) by client / server / postgres / machine

    @property
    def error_count(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 201) + sum(self.errors.values())


def payout_op(session: aiohttp.ClientSession, payees: list[str], statuses: Counter[int],
              errors: Counter[str], label: str) -> c.AsyncOp:
    return c.payout_op(session, TOKEN, payees, AMOUNT, statuses, errors, label)


async def seed(session: aiohttp.ClientSession, payees: list[str]) -> None:
    """Credit every payee through the API: fund an escrow, release it all to the payee."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    sem = asyncio.Semaphore(16)

    async def one(payee: str) -> None:
        async with sem:
            escrow_id = f"seed_{payee}"
            async with session.post("/api/escrows", json={"escrowId": escrow_id, "amount": CREDIT,
                                                          "currency": "USD"}, headers=auth) as r:
                if r.status != 201:
                    raise ConfigError(f"seeding failed: POST /api/escrows -> {r.status} {await r.text()}")
            async with session.post(f"/api/escrows/{escrow_id}/release", json={"payeeId": payee, "amount": CREDIT},
                                    headers=auth) as r:
                if r.status != 200:
                    raise ConfigError(f"seeding failed: release -> {r.status} {await r.text()}")

    await asyncio.gather(*(one(p) for p in payees))


async def measure(server: Server, session: aiohttp.ClientSession, payees: list[str], label: str, *,
                  concurrency: int, seconds: float, warmup: float) -> Run:
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    op = payout_op(session, payees, statuses, errors, label)
    if warmup > 0:
        await c.drive_async(op, concurrency, seconds=warmup)
        statuses.clear()
        errors.clear()
    meter = c.CpuMeter({"server": server.pid}, server.database, me="client", postgres="postgres")
    before = meter.snapshot()
    result = await c.drive_async(op, concurrency, seconds=seconds)
    return Run(result, statuses, errors, c.CpuMeter.cores(before, meter.snapshot()))


async def measure_appends(url: str, concurrency: int, seconds: float, warmup: float) -> c.Result:
    size = concurrency + c.POOL_HEADROOM
    pool = await db.connect_pool(url, min_size=size, max_size=size)
    try:
        await c.settle(pool)
        return await c.drive_async(c.append_op(EventStore(pool), "cmdbench", 1), concurrency, seconds=seconds,
                                   warmup=warmup)
    finally:
        await pool.close()


@dataclass
class Figures:
    version: str = ""
    spread: Run | None = None
    hot: Run | None = None
    appends: c.Result | None = None
    consistency: str = ""
    sql: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    profile_path: str = ""


async def check_consistency(url: str, created: int) -> str:
    conn = await db.connect_pool(url, min_size=1, max_size=1)
    try:
        payouts = await conn.fetchval("SELECT count(*) FROM payouts")
        totals = await conn.fetch("SELECT currency, sum(balance) AS t FROM balances GROUP BY currency")
        negative = await conn.fetchval("SELECT count(*) FROM balances WHERE protected AND balance < 0")
    finally:
        await conn.close()
    ok = payouts == created and all(r["t"] == 0 for r in totals) and negative == 0
    sums = ", ".join(f"{r['currency']} {r['t']}" for r in totals)
    return (f"{'OK' if ok else 'FAILED'}: {payouts:,} payouts in the table for {created:,} answered 201; ledger sums "
            f"to {sums}; {negative} protected balances below zero")


async def run(args: argparse.Namespace, workdir: Path) -> Figures:
    figures = Figures()
    server_url = c.server_url()
    async with c.scratch_database(server_url, "commands") as url:
        print(f"database: {c.describe_server(server_url)}; scratch database {c.database_name(url)}")
        payees = [f"payee_{i:04d}" for i in range(args.payees)]
        server = await Server.start(url, pool_size=args.pool_size, instrument=False, workdir=workdir,
                                    skip_reset=args.what_if_skip_reset)
        print(f"server: a separate process (pid {server.pid}, {server.url}) built like `periodya serve`: "
              f"open_pool + create_app + AppRunner(access_log=None), log level info; pool "
              f"{f'max {args.pool_size}' if args.pool_size else SERVE_POOL_DEFAULT}; payouts by group commit "
              f"(up to {MAX_RUNNING} batch transactions in flight, at most {MAX_BATCH} requests each)"
              f"{'; WHAT-IF: pool connections are not reset on release' if args.what_if_skip_reset else ''}")
        print(f"client: this process (pid {os.getpid()}), one keep-alive aiohttp session, concurrency "
              f"{args.concurrency}; {c.machine_load()} before the run")
        try:
            async with c.client_session(server.url, args.concurrency) as session:
                await seed(session, [*payees, "payee_hot"])
                figures.spread = await measure(server, session, payees, "spread", concurrency=args.concurrency,
                                               seconds=args.seconds, warmup=args.warmup)
                if args.hot_seconds > 0:
                    figures.hot = await measure(server, session, ["payee_hot"], "hot", concurrency=args.concurrency,
                                                seconds=args.hot_seconds, warmup=0)
        finally:
            await server.stop()
        figures.consistency = await check_consistency(url, await _created_total(url))
        figures.appends = await measure_appends(url, args.concurrency, args.append_seconds, args.warmup)
        pool = await db.connect_pool(url, min_size=1, max_size=1)
        try:
            figures.version = await c.server_version(pool)
        finally:
            await pool.close()
        spread = figures.spread
        missed = spread.result.per_second < TARGET_RPS or spread.result.p99_ms >= TARGET_P99_MS
        if args.profile or (missed and not args.no_profile):
            await profile(url, args, payees, workdir, figures)
    return figures


async def _created_total(url: str) -> int:
    # Every payout row came from a 201 (refusals write nothing); the idempotency table holds one row per 201.
    pool = await db.connect_pool(url, min_size=1, max_size=1)
    try:
        return int(await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE scope = 'POST /api/payouts'"))
    finally:
        await pool.close()


async def profile(url: str, args: argparse.Namespace, payees: list[str], workdir: Path, figures: Figures) -> None:
    """A second server, instrumented: one window timing SQL and pool waits, one under cProfile."""
    server = await Server.start(url, pool_size=args.pool_size, instrument=True, workdir=workdir,
                                skip_reset=args.what_if_skip_reset)
    try:
        async with c.client_session(server.url, args.concurrency) as session:
            statuses: Counter[int] = Counter()
            errors: Counter[str] = Counter()
            op = payout_op(session, payees, statuses, errors, "prof")
            await c.drive_async(op, args.concurrency, seconds=args.warmup or 0.5)
            await server.command("start-sql")
            sql_run = await c.drive_async(op, args.concurrency, seconds=args.profile_seconds)
            await server.command("stop")
            figures.sql = server.stats() | {"client_rps": sql_run.per_second, "client_p50_ms": sql_run.p50_ms}
            await server.command("start-profile")
            prof_run = await c.drive_async(op, args.concurrency, seconds=args.profile_seconds)
            await server.command("stop")
            figures.profile = server.stats() | {"client_rps": prof_run.per_second, "client_ops": prof_run.ops}
            figures.profile_path = server.stats_out + ".pstats"
            if args.profile_out:
                shutil.copyfile(figures.profile_path, args.profile_out)
    finally:
        await server.stop()




def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench commands", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first (default 1)")
    parser.add_argument("--concurrency", type=int, default=32, help="client workers (default 32)")
    parser.add_argument("--payees", type=int, default=64, help="payees the requests rotate over (default 64)")
    parser.add_argument("--hot-seconds", type=float, default=3.0,
                        help="seconds of the one-hot-payee run (default 3; 0 skips it)")
    parser.add_argument("--append-seconds", type=float, default=5.0,
                        help="seconds of the EventStore.append line (default 5)")
    parser.add_argument("--pool-size", type=int, default=0,
                        help="server pool max size (default: what `periodya serve` uses)")
    parser.add_argument("--what-if-skip-reset", action="store_true",
                        help="what-if: the server's pool skips asyncpg's reset query on release (not the shipped "
                             "configuration; measures what that round trip costs)")
    parser.add_argument("--profile", action="store_true", help="profile the server even when the targets pass")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--profile-seconds", type=float, default=3.0, help="seconds per profiling window")
    parser.add_argument("--profile-out", help="also save the server's cProfile stats (pstats format) here")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.payees < 1 or args.seconds <= 0:
        parser.error("--concurrency, --payees and --seconds must be positive")
    from bench._commands_report import report  # it reads this module's targets and figures

    with tempfile.TemporaryDirectory(prefix="periodya-bench-commands-") as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
        report(figures, args)
    return 0

