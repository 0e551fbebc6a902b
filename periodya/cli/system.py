"""`periodya migrate | up | serve | scheduler | run JOB`: the running system's commands."""

from __future__ import annotations

import argparse
import json
from contextlib import AsyncExitStack
from typing import Any

from periodya import db
from periodya.cli.service import embedded_provider, http_site, stop_event
from periodya.config import Settings
from periodya.deps import open_pool, runner_deps
from periodya.logging import configure, get_logger

log = get_logger("periodya")


def add_parser(sub: Any) -> None:
    up = sub.add_parser("up", help="everything on one machine: database, schema, API, scheduler, simulator",
                        description="Start the embedded PostgreSQL (unless DATABASE_URL is set), apply the schema, "
                                    "serve the API, run the scheduler with the runbook's cron table, and, when no "
                                    "provider is configured, the provider simulator (127.0.0.1, $PERIODYA_SIM_PORT "
                                    "or 8081). Missing secrets are generated once into <data dir>/secrets.env (0600) "
                                    "and reused; the URLs, that file and the next commands are printed on start.")
    serve = sub.add_parser("serve", help="serve the HTTP API (no scheduler)")
    for p in (up, serve):
        p.add_argument("--host", help="listen address (default $PERIODYA_HOST or 127.0.0.1)")
        p.add_argument("--port", type=int, help="listen port (default $PERIODYA_PORT or 8080)")
    up.add_argument("--sim-port", type=int, help="port of the provider simulator (default $PERIODYA_SIM_PORT or 8081)")
    sub.add_parser("scheduler", help="run the runbook's cron table against the configured provider")
    run = sub.add_parser("run", help="run one job once and print its summary as JSON")
    run.add_argument("job", help="outbox | webhooks | reconcile-pull | repair | sentinel")
    run.add_argument("--batch", type=int, help="items per run (default: the runbook's batch size)")
    run.add_argument("--mode", choices=["recent", "full"], help="sentinel mode")


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    pool = await open_pool(settings, check_schema=False, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
    finally:
        await pool.close()
    print("schema is up to date")
    return 0


def _listen(args: argparse.Namespace, settings: Settings) -> Settings:
    return settings.with_overrides(host=args.host, port=args.port, sim_port=getattr(args, "sim_port", None))


async def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings = _listen(args, settings)
    configure(settings.log_level)
    stop = stop_event()
    pool = await open_pool(settings)
    try:
        async with AsyncExitStack() as stack:
            deps = (await stack.enter_async_context(runner_deps(settings, pool))
                    if settings.provider_endpoint() else None)
            url = await stack.enter_async_context(http_site(settings, pool, deps))
            print(f"periodya serving on {url}", flush=True)
            await stop.wait()
    finally:
        await pool.close()
    return 0


async def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from periodya.runners.scheduler import run_forever, schedule

    configure(settings.log_level)
    stop = stop_event()
    pool = await open_pool(settings)
    try:
        async with runner_deps(settings, pool) as deps:
            await run_forever(deps, schedule(), stop)
    finally:
        await pool.close()
    return 0


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from periodya.runners.execute import check, execute_job

    check(args.job, args.batch)
    configure(settings.log_level)
    pool = await open_pool(settings)
    try:
        async with runner_deps(settings, pool) as deps:
            summary = await execute_job(deps, args.job, batch=args.batch, mode=args.mode, trigger="cli")
    finally:
        await pool.close()
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


async def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from periodya import localsecrets
    from periodya.cli.service import ensure_up_secrets
    from periodya.cli.up_banner import banner
    from periodya.runners.scheduler import run_forever, schedule

    settings = _listen(args, settings)
    configure(settings.log_level)
    stop = stop_event()
    pool = await open_pool(settings, check_schema=False)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        settings = ensure_up_secrets(settings)
        async with AsyncExitStack() as stack:
            if not settings.provider_url:
                settings = await stack.enter_async_context(embedded_provider(settings, stack))
                settings = settings.with_overrides(local_sim=True)
            deps = await stack.enter_async_context(runner_deps(settings, pool))
            url = await stack.enter_async_context(http_site(settings, pool, deps))
            database = "DATABASE_URL" if settings.database_url else f"embedded, {settings.data_dir / 'pgdata'}"
            print(banner(settings, url, localsecrets.path(settings.data_dir), database=database), flush=True)
            await run_forever(deps, schedule(), stop)
    finally:
        await pool.close()
    return 0
