"""Platform command throughput: POST /api/payouts over HTTP vs the raw EventStore.append line.

One run, one fresh scratch database (dropped afterwards):
  1. the API server runs in a SEPARATE PROCESS (this module's `serve_main`, wired exactly like
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
import contextvars
import cProfile
import io
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import _common as c
from bench.append import POOL_HEADROOM, append_op
from periodya import db
from periodya.errors import ConfigError
from periodya.eventstore import EventStore
from periodya.handlers.payout_batch import MAX_BATCH, MAX_RUNNING

TOKEN = "bench-service-token"
TARGET_RPS, TARGET_P99_MS = 1_000, 50.0
REPO = Path(__file__).resolve().parent.parent
AMOUNT = 100
CREDIT = 10**12  # per payee: never the limit during a run
SERVE_POOL_DEFAULT = "periodya serve's default (db.connect_pool: min 2, max 10)"


# ============================================================================================
# The server process
# ============================================================================================

@dataclass
class RequestStats:
    """One instrumented POST /api/payouts, timed only in the request's own task (a task it spawns, such as
    the coalesced NOTIFY, shares the context but not the task, and is not charged to the request)."""

    task: asyncio.Task[Any] | None
    status: int = 0
    handler_s: float = 0.0
    wait_s: float = 0.0
    acquires: int = 0
    release_s: float = 0.0
    sql_s: float = 0.0
    sql_n: int = 0

    def mine(self) -> bool:
        return asyncio.current_task() is self.task

    def as_json(self) -> dict[str, float]:
        return {k: v for k, v in vars(self).items() if k != "task"}


_request: contextvars.ContextVar[RequestStats | None] = contextvars.ContextVar("bench_request", default=None)


@dataclass
class Instruments:
    """Server-side timing: handler wall time, pool wait and release, SQL round trips per statement."""

    on: bool = False
    requests: list[RequestStats] = field(default_factory=list)
    statements: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    profiler: cProfile.Profile | None = None
    cpu_started: float = 0.0
    wall_started: float = 0.0

    def statement(self, query: str, elapsed: float) -> None:
        entry = self.statements[statement_key(query)]
        entry[0] += 1
        entry[1] += elapsed
        req = _request.get()
        if req is not None and req.mine():
            req.sql_n += 1
            req.sql_s += elapsed

    def acquired(self, waited: float) -> None:
        req = _request.get()
        if req is not None and req.mine():
            req.wait_s += waited
            req.acquires += 1

    def released(self, elapsed: float) -> None:
        req = _request.get()
        if req is not None and req.mine():
            req.release_s += elapsed


INSTRUMENTS = Instruments()


def statement_key(query: str) -> str:
    text = " ".join(query.split())
    text = re.sub(r"\$\d+", "$", text)
    return text[:88]


class TimedConnection(c.TimedConnection):
    """Every statement timed into INSTRUMENTS (per statement; per request when run in the request's task)."""

    instruments = INSTRUMENTS


async def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from periodya.config import Settings
    from periodya.deps import open_pool
    from periodya.http.app import create_app
    from periodya.logging import configure

    settings = Settings.from_env()
    configure(settings.log_level)
    inst = INSTRUMENTS
    kwargs: dict[str, Any] = {}
    if args.pool_size:
        kwargs.update(min_size=min(2, args.pool_size), max_size=args.pool_size)
    if args.instrument:
        kwargs["connection_class"] = TimedConnection
    if args.skip_reset:
        async def no_reset(_conn: Any) -> None:  # what-if: the app keeps no session state on pool connections
            return None

        kwargs["reset"] = no_reset
    try:
        pool = await open_pool(settings, **kwargs)
    except TypeError as exc:  # db.connect_pool now sets its own `reset`: the what-if is the shipped behaviour
        if "reset" not in str(exc):
            raise
        kwargs.pop("reset")
        pool = await open_pool(settings, **kwargs)
    app = create_app(settings, c.TimedPool(pool, INSTRUMENTS) if args.instrument else pool)
    if args.instrument:
        @web.middleware
        async def timing(request: web.Request, handler: Any) -> web.StreamResponse:
            if not inst.on or request.path != "/api/payouts":
                return await handler(request)
            req = RequestStats(asyncio.current_task())
            token = _request.set(req)
            started = time.perf_counter()
            try:
                response = await handler(request)
                req.status = response.status
                return response
            finally:
                req.handler_s = time.perf_counter() - started
                inst.requests.append(req)
                _request.reset(token)

        app.middlewares.insert(0, timing)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"READY http://{host}:{port} pid={os.getpid()}", flush=True)
    try:
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if not line or line == "quit":
                break
            print(_control(line, inst, args), flush=True)
    finally:
        await runner.cleanup()
        await pool.close()
    return 0


def _control(line: str, inst: Instruments, args: argparse.Namespace) -> str:
    """start-sql (timers on) | start-profile (cProfile on, timers off) | stop -> figures to args.stats_out."""
    if line in ("start-sql", "start-profile"):
        inst.requests.clear()
        inst.statements.clear()
        inst.cpu_started, inst.wall_started = time.process_time(), time.perf_counter()
        if line == "start-profile":
            inst.profiler = cProfile.Profile()
            inst.profiler.enable()
        else:
            inst.on = True
        return "OK"
    if line == "stop":
        inst.on = False
        cpu, wall = time.process_time() - inst.cpu_started, time.perf_counter() - inst.wall_started
        if inst.profiler is not None:
            inst.profiler.disable()
            inst.profiler.dump_stats(args.stats_out + ".pstats")
            inst.profiler = None
        Path(args.stats_out).write_bytes(orjson.dumps({
            "cpu_s": cpu, "wall_s": wall, "requests": [r.as_json() for r in inst.requests],
            "statements": dict(inst.statements)}))
        return "OK"
    return f"ERR unknown command {line!r}"


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.commands server")
    parser.add_argument("--pool-size", type=int, default=0)
    parser.add_argument("--instrument", action="store_true")
    parser.add_argument("--skip-reset", action="store_true")
    parser.add_argument("--stats-out", default="")
    return asyncio.run(_serve(parser.parse_args(argv)))


# ============================================================================================
# The load generator (this process)
# ============================================================================================

class Server:
    """The API server subprocess, controlled over stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, pid: int, stderr_path: Path,
                 stats_out: str, database: str) -> None:
        self.proc, self.url, self.pid, self.stderr_path, self.stats_out = proc, url, pid, stderr_path, stats_out
        self.database = database

    @classmethod
    async def start(cls, database_url: str, *, pool_size: int, instrument: bool, workdir: Path,
                    skip_reset: bool = False) -> Server:
        env = {**os.environ, "DATABASE_URL": database_url, "PERIODYA_SERVICE_TOKEN": TOKEN,
               "PERIODYA_LOG_LEVEL": "info", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get(
                   "PYTHONPATH", "")]).rstrip(os.pathsep)}
        stats_out = str(workdir / f"stats-{uuid.uuid4().hex[:6]}.json")
        argv = ["--stats-out", stats_out] + (["--pool-size", str(pool_size)] if pool_size else [])
        argv += ["--instrument"] if instrument else []
        argv += ["--skip-reset"] if skip_reset else []
        stderr_path = workdir / f"server-{uuid.uuid4().hex[:6]}.log"
        with stderr_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; from bench.commands import serve_main; "
                                      "sys.exit(serve_main(sys.argv[1:]))", *argv,
                cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode().strip()
        except TimeoutError:
            line = ""
        if not line.startswith("READY "):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            raise ConfigError(f"the API server did not start: {stderr_path.read_text(errors='replace')[-2000:]}")
        _, url, pid = line.split()
        return cls(proc, url, int(pid.split("=")[1]), stderr_path, stats_out, c.database_name(database_url))

    async def command(self, line: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        answer = (await asyncio.wait_for(self.proc.stdout.readline(), timeout=120)).decode().strip()
        if answer != "OK":
            raise ConfigError(f"server answered {answer!r} to {line!r}")

    def stats(self) -> dict[str, Any]:
        return dict(orjson.loads(Path(self.stats_out).read_bytes()))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


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


# --- CPU accounting from /proc (Linux); absent elsewhere ------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _postgres_pids(database: str) -> list[int]:
    """The embedded server's postmaster, its auxiliary processes (WAL writer, checkpointer...) and the
    backends connected to `database`; other databases' backends (other runs sharing the server) are left
    out. Empty when DATABASE_URL points elsewhere."""
    if os.environ.get("DATABASE_URL"):
        return []
    try:
        master = int((c.bench_data_dir() / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != master:
                continue
            title = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except (OSError, ValueError, IndexError):
            continue
        # a backend's title: "postgres: USER DATABASE [local]|HOST(PORT) STATE"; anything else is auxiliary
        backend = len(title) >= 4 and (title[3].startswith("[local]") or "(" in title[3])
        if not backend or title[2] == database:
            pids.append(int(stat.parent.name))
    return pids


def _machine_busy() -> float:
    try:
        parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / _TICK


class CpuMeter:
    def __init__(self, server_pid: int, database: str) -> None:
        self.server_pid, self.database = server_pid, database

    def snapshot(self) -> dict[str, float]:
        pg = _postgres_pids(self.database)
        return {"client": time.process_time(), "server": _proc_cpu(self.server_pid),
                "postgres": sum(_proc_cpu(p) for p in pg) if pg else float("nan"), "machine": _machine_busy(),
                "wall": time.perf_counter()}

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        wall = after["wall"] - before["wall"]
        return {k: (after[k] - before[k]) / wall for k in ("client", "server", "postgres", "machine")}


async def measure(server: Server, session: aiohttp.ClientSession, payees: list[str], label: str, *,
                  concurrency: int, seconds: float, warmup: float) -> Run:
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    op = payout_op(session, payees, statuses, errors, label)
    if warmup > 0:
        await c.drive_async(op, concurrency, seconds=warmup)
        statuses.clear()
        errors.clear()
    meter = CpuMeter(server.pid, server.database)
    before = meter.snapshot()
    result = await c.drive_async(op, concurrency, seconds=seconds)
    return Run(result, statuses, errors, CpuMeter.cores(before, meter.snapshot()))


client_session = c.client_session


async def measure_appends(url: str, concurrency: int, seconds: float, warmup: float) -> c.Result:
    size = concurrency + POOL_HEADROOM
    pool = await db.connect_pool(url, min_size=size, max_size=size)
    try:
        await c.settle(pool)
        return await c.drive_async(append_op(EventStore(pool), "cmdbench", 1), concurrency, seconds=seconds,
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
            async with client_session(server.url, args.concurrency) as session:
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
        async with client_session(server.url, args.concurrency) as session:
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


# ============================================================================================
# Report
# ============================================================================================

def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(figures: Figures, args: argparse.Namespace) -> None:
    assert figures.spread is not None and figures.appends is not None
    print(f"PostgreSQL {figures.version}; {args.seconds:g} s measured after {args.warmup:g} s warm-up; "
          f"{args.payees} payees round-robin; amount {AMOUNT} USD per payout")
    rows = []
    for name, r in (("POST /api/payouts, payees round-robin", figures.spread),
                    ("POST /api/payouts, one hot payee", figures.hot)):
        if r is None:
            continue
        rows.append([name, r.result.ops, c.rate(r.result.per_second), c.ms(r.result.p50_ms),
                     c.ms(r.result.percentile_ms(0.95)), c.ms(r.result.p99_ms), r.error_count,
                     _fmt_statuses(r)])
    c.print_table([f"workload (concurrency {args.concurrency})", "requests", "req/s", "p50 ms", "p95 ms",
                   "p99 ms", "errors", "statuses"], rows, title="1. platform command over HTTP")
    a = figures.appends
    c.print_table(["line", "appends/s", "p50 ms", "p95 ms", "p99 ms"],
                  [[f"EventStore.append, 1 event, concurrency {args.concurrency} (this process)",
                    c.rate(a.per_second), c.ms(a.p50_ms), c.ms(a.percentile_ms(0.95)), c.ms(a.p99_ms)]],
                  title="2. floor/peer: raw event-store appends on the same database, same run")
    share = figures.spread.result.per_second / a.per_second if a.per_second else 0
    print(f"   payouts/s are {share:.0%} of appends/s (a payout is an HTTP request plus its share of a group-commit "
          f"transaction of ~11 SQL round trips appending 2 events per payout; an append is one round trip)")
    cpu = [["client (this process)", figures.spread.cpu["client"]],
           ["API server process", figures.spread.cpu["server"]],
           ["PostgreSQL (this database's backends + auxiliaries)", figures.spread.cpu["postgres"]],
           ["other processes on the machine", _others(figures.spread.cpu)],
           ["whole machine (all processes)", figures.spread.cpu["machine"]]]
    rps = figures.spread.result.per_second or 1
    c.print_table(["process", "cores used", "CPU ms per payout"],
                  [[n, "n/a" if v != v else f"{v:.2f}", "n/a" if v != v else f"{v / rps * 1000:.2f}"] for n, v in cpu],
                  title=f"3. CPU during the round-robin run ({os.cpu_count()} CPUs)")
    print(f"   consistency after the run: {figures.consistency}")
    r = figures.spread.result
    c.print_table(["target", "figure", "result"], [
        [f">= {TARGET_RPS:,} POST /api/payouts per second (concurrency {args.concurrency})", c.rate(r.per_second),
         verdict(r.per_second >= TARGET_RPS)],
        [f"p99 < {TARGET_P99_MS:g} ms", c.ms(r.p99_ms), verdict(r.p99_ms < TARGET_P99_MS)],
        ["no errors (every request 201)", str(figures.spread.error_count), verdict(figures.spread.error_count == 0)],
    ], title="4. targets")
    if figures.sql is not None:
        report_sql(figures.sql, args)
    if figures.profile is not None:
        report_profile(figures.profile, figures.profile_path)
    findings(figures, args)


def _others(cpu: dict[str, float]) -> float:
    pg = 0.0 if cpu["postgres"] != cpu["postgres"] else cpu["postgres"]
    return max(0.0, cpu["machine"] - cpu["client"] - cpu["server"] - pg)


def _fmt_statuses(r: Run) -> str:
    parts = [f"{s}x{n}" for s, n in sorted(r.statuses.items())] + [f"{k}x{n}" for k, n in r.errors.items()]
    return " ".join(parts) or "-"


def statements_per_payout(statements: dict[str, list[float]], payouts: int) -> tuple[float, float]:
    """(SQL statements per payout over every task, mean payouts per COMMIT) from the per-statement totals."""
    total = sum(v[0] for v in statements.values())
    commits = sum(v[0] for k, v in statements.items() if k.startswith("COMMIT"))
    return total / payouts if payouts else 0.0, payouts / commits if commits else 0.0


def report_sql(stats: dict[str, Any], args: argparse.Namespace) -> None:
    reqs = [q for q in stats["requests"] if q["status"] == 201]
    if not reqs:
        print("\n5. no instrumented requests recorded")
        return
    n = len(reqs)
    handler = sum(q["handler_s"] for q in reqs) / n * 1000
    wait = sum(q["wait_s"] for q in reqs) / n * 1000
    sql = sum(q["sql_s"] for q in reqs) / n * 1000
    release = sum(q["release_s"] for q in reqs) / n * 1000
    acquires = sum(q["acquires"] for q in reqs) / n
    rest = handler - wait - sql - release
    trips, batch = statements_per_payout(stats["statements"], n)
    print(f"\n5. where a request's time goes (instrumented server, {args.profile_seconds:g} s window, {n:,} payouts "
          f"at {stats['client_rps']:,.0f}/s; timings add a little overhead)")
    c.print_table(["per POST /api/payouts (mean)", "ms", "share"], [
        ["server handler, middleware to response", c.ms(handler), "100%"],
        [f"  waiting for a pool connection ({acquires:.1f} acquires)", c.ms(wait), f"{wait / handler:.0%}"],
        ["  in SQL round trips of its own task (lock waits included)", c.ms(sql), f"{sql / handler:.0%}"],
        ["  returning the connection to the pool (incl. any reset query)", c.ms(release),
         f"{release / handler:.0%}"],
        ["  the rest: waiting for its batch (queue + shared transaction) and Python on the event loop", c.ms(rest),
         f"{rest / handler:.0%}"],
        [f"SQL statements per payout, all tasks (mean batch: {batch:.1f} payouts per COMMIT)", f"{trips:.2f}", ""],
        ["client-observed p50", c.ms(stats["client_p50_ms"]), ""],
        ["server CPU while measuring (cores)", f"{stats['cpu_s'] / stats['wall_s']:.2f}", ""],
    ])
    rows = sorted(stats["statements"].items(), key=lambda kv: -kv[1][1])
    total = sum(v[1] for _, v in rows) or 1
    c.print_table(["statement (normalised, truncated; all tasks)", "per payout", "mean ms", "share of SQL time"],
                  [[k, f"{v[0] / n:.2f}", c.ms(v[1] / v[0] * 1000), f"{v[1] / total:.0%}"] for k, v in rows[:20]],
                  title="   SQL statements, by total time")


_PACKAGES = [("periodya", "/periodya/"), ("asyncpg", "/asyncpg/"), ("aiohttp", "/aiohttp/"),
             ("pydantic", "/pydantic"), ("structlog", "/structlog/"), ("yarl/multidict", "/yarl/"),
             ("yarl/multidict", "/multidict/"), ("asyncio", "/asyncio/"), ("orjson", "orjson")]


def _package(filename: str) -> str:
    for name, marker in _PACKAGES:
        if marker in filename:
            return name
    if filename.startswith("~") or filename == "~":
        return "builtins (C)"
    return "other"


def report_profile(stats: dict[str, Any], path: str) -> None:
    ps = pstats.Stats(path, stream=io.StringIO())
    by_package: Counter[str] = Counter()
    total = 0.0
    entries = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in ps.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename)] += tottime
        total += tottime
        entries.append((tottime, ncalls, cumtime, f"{Path(filename).name}:{line} {func}"))
    requests = stats["client_ops"] or 1
    print(f"\n6. server CPU profile (cProfile, {requests:,} payouts at {stats['client_rps']:,.0f}/s under the profiler;"
          f" {stats['cpu_s'] / stats['wall_s']:.2f} cores)")
    c.print_table(["package (own time)", "share", "us per payout"],
                  [[k, f"{v / total:.0%}", f"{v / requests * 1e6:,.0f}"] for k, v in by_package.most_common()])
    entries.sort(reverse=True)
    c.print_table(["function (top 15 by own time)", "calls/payout", "own us/payout", "cum us/payout"],
                  [[name[:90], f"{ncalls / requests:.1f}", f"{tot / requests * 1e6:,.0f}",
                    f"{cum / requests * 1e6:,.0f}"] for tot, ncalls, cum, name in entries[:15]])


# Statements a payout runs that a leaner command path would not (matched on the normalised text).
_AVOIDABLE = [
    ("SELECT lock_keys", lambda k: k > 1.5,
     "{k:.0f} lock_keys round trips (idempotency key; payout stream; payee accounts; the same accounts again in "
     "UnitOfWork.commit, already held, re-entrant but still a round trip): the stream is brand new, so nobody else "
     "can hold it, and its lock can share one call with the accounts' after the idempotency key's: 2 would do"),
    ("SELECT seq, tx::text::bigint AS tx, stream_id", lambda k: k >= 1,
     "read_stream of the payout's stream, whose id the route has just generated (uuid4): always empty; skip the "
     "load (and its stream lock) for a new id"),
    ("SELECT * FROM payouts WHERE payout_id = ANY", lambda k: k >= 1,
     "the payouts and outbox projections each SELECT the current row before the upsert: for PayoutRequested "
     "there is none; fold from the event alone when the batch starts at version 1"),
    ("SELECT p.*, o.status AS outbox_status", lambda k: k >= 1,
     "the response is read back (payout view SELECT) right after writing it: it could be built from the "
     "folded state and the recorded event"),
    ("SELECT pg_advisory_unlock_all(); CLOSE ALL", lambda k: k >= 1,
     "asyncpg's default pool reset ({k:.2f} per payout) on every release: commands keep only transaction-scoped "
     "state; if the LISTENing followers had their own connections instead of borrowing pool ones, a no-op `reset` "
     "in connect_pool would save this round trip (measure with --what-if-skip-reset)"),
    ("NOTIFY periodya_events", lambda k: k >= 0.05,
     "EventStore.wake sends NOTIFY from a pool connection ({k:.2f} per payout, plus its own acquire and reset): "
     "it competes with requests for the pool; a dedicated connection, or a longer coalescing window, takes it "
     "off the request path"),
]


def round_trip_findings(statements: dict[str, list[float]], requests: int) -> list[str]:
    out = []
    for prefix, applies, text in _AVOIDABLE:
        count = sum(v[0] for k, v in statements.items() if k.startswith(prefix)) / requests
        if applies(count):
            out.append("avoidable round trip: " + text.format(k=count))
    return out


def findings(figures: Figures, args: argparse.Namespace) -> None:
    assert figures.spread is not None
    lines = []
    spread, cpu = figures.spread, figures.spread.cpu
    cores = os.cpu_count() or 1
    saturated = cpu["machine"] >= 0.8 * cores
    if saturated:
        lines.append(f"the machine was saturated: {cpu['machine']:.2f} of {cores} cores busy (client "
                     f"{cpu['client']:.2f}, server {cpu['server']:.2f}, PostgreSQL {cpu['postgres']:.2f}); the "
                     f"figure is CPU-bound: more cores or less work per request move it")
    ours = cpu["client"] + cpu["server"] + (0.0 if cpu["postgres"] != cpu["postgres"] else cpu["postgres"])
    per_payout_ms = ours / spread.result.per_second * 1000 if spread.result.per_second else 0.0
    if per_payout_ms > 0 and cpu["postgres"] == cpu["postgres"]:
        ceiling = cores / per_payout_ms * 1000
        lines.append(f"CPU budget: {per_payout_ms:.2f} ms of CPU per payout (client + API server + PostgreSQL), so "
                     f"{cores} cores cap this workload near {ceiling:,.0f}/s even with perfect overlap; "
                     f"{TARGET_RPS:,}/s needs <= {cores / TARGET_RPS * 1000:.2f} ms per payout on this machine")
    mean_ms = args.concurrency / spread.result.per_second * 1000 if spread.result.per_second else 0.0
    lines.append(f"latency follows throughput (Little's law): {args.concurrency} requests always in flight at "
                 f"{spread.result.per_second:,.0f}/s is a {mean_ms:.0f} ms mean; a p99 under {TARGET_P99_MS:g} ms "
                 f"at concurrency {args.concurrency} needs well over {args.concurrency / TARGET_P99_MS * 1000:,.0f}/s")
    if _others(cpu) >= 0.25:
        lines.append(f"other processes used {_others(cpu):.2f} cores during the run (concurrent jobs on this "
                     f"machine): the figures are lower than on a quiet machine; rerun when it is idle")
    if cpu["server"] >= 0.8:
        lines.append(f"the API server process used {cpu['server']:.2f} cores: one Python event loop is close to "
                     f"its ceiling; several server processes (SO_REUSEPORT / a process per core) scale it")
    if figures.hot is not None and figures.hot.result.per_second < 0.7 * spread.result.per_second:
        lines.append(f"one hot payee: {figures.hot.result.per_second:,.0f}/s vs {spread.result.per_second:,.0f}/s "
                     f"spread: requests for one payee serialise on its account lock for the whole transaction")
    if figures.sql is not None:
        reqs = [q for q in figures.sql["requests"] if q["status"] == 201]
        if reqs:
            n = len(reqs)
            handler = sum(q["handler_s"] for q in reqs) / n * 1000
            wait = sum(q["wait_s"] for q in reqs) / n * 1000
            trips, batch = statements_per_payout(figures.sql["statements"], n)
            pool_size = args.pool_size or 10
            held = handler - wait  # from the first statement to the connection's return, roughly
            if wait > 0.25 * handler:
                ceiling = pool_size / held * 1000 if held > 0 else 0.0
                why = ("that is queueing, not work: with the CPUs saturated, a bigger pool only moves the queue into "
                       "PostgreSQL (check with --pool-size)" if saturated else
                       f"with CPU to spare the pool is the limit ({pool_size} / {held:.1f} ms = {ceiling:,.0f}/s): "
                       f"try --pool-size {args.concurrency}")
                lines.append(f"requests wait {wait:.1f} of {handler:.1f} ms for a pool connection: {pool_size} "
                             f"connections for {args.concurrency} requests in flight, each held {held:.1f} ms; {why}")
            lines.append(f"{trips:.2f} SQL statements per payout (group commit: {batch:.1f} payouts per transaction on "
                         f"average): the server's and PostgreSQL's CPU per payout scale with round trips per payout, "
                         f"and every one lengthens the time a connection and the payees' locks are held")
            lines += round_trip_findings(figures.sql["statements"], n)
    if not lines:
        lines.append("targets met; nothing stands out")
    print("\n7. findings")
    for line in lines:
        print(f"   - {line}")


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
    with tempfile.TemporaryDirectory(prefix="periodya-bench-commands-") as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
        report(figures, args)
    return 0

