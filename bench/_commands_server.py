"""The API server of `bench commands`, a process of its own built like `periodya serve`, and its control.

`python -m bench._commands_server` (`serve_main`) is the server process: periodya.deps.open_pool +
create_app + AppRunner(access_log=None), log level info; with --instrument, a timing connection class
and pool wrapper (bench/_common.py) and a middleware time every POST /api/payouts (handler wall time,
pool wait and release, SQL round trips per statement). It prints `READY URL pid=N`, then obeys stdin
lines: start-sql | start-profile | stop (figures to --stats-out) | quit. `Server` starts it from the
load generator and talks to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import cProfile
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import _common as c
from periodya.errors import ConfigError

TOKEN = "bench-service-token"


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
        entry = self.statements[c.statement_key(query)]
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
    parser = argparse.ArgumentParser(prog="python -m bench._commands_server")
    parser.add_argument("--pool-size", type=int, default=0)
    parser.add_argument("--instrument", action="store_true")
    parser.add_argument("--skip-reset", action="store_true")
    parser.add_argument("--stats-out", default="")
    return asyncio.run(_serve(parser.parse_args(argv)))


class Server:
    """The API server subprocess, controlled over stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, pid: int, stderr_path: Path,
                 stats_out: str, database: str) -> None:
        self.proc, self.url, self.pid, self.stderr_path, self.stats_out = proc, url, pid, stderr_path, stats_out
        self.database = database

    @classmethod
    async def start(cls, database_url: str, *, pool_size: int, instrument: bool, workdir: Path,
                    skip_reset: bool = False) -> Server:
        env = c.child_env({"DATABASE_URL": database_url, "PERIODYA_SERVICE_TOKEN": TOKEN, "PERIODYA_LOG_LEVEL": "info"})
        stats_out = str(workdir / f"stats-{uuid.uuid4().hex[:6]}.json")
        argv = ["--stats-out", stats_out] + (["--pool-size", str(pool_size)] if pool_size else [])
        argv += ["--instrument"] if instrument else []
        argv += ["--skip-reset"] if skip_reset else []
        stderr_path = workdir / f"server-{uuid.uuid4().hex[:6]}.log"
        with stderr_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench._commands_server", *argv,
                cwd=c.REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
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


if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))
