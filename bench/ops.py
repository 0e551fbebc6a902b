"""Ops at scale: GET /api/admin/ops/health and GET /metrics latency over HTTP, sentinel run times, loaded DB.

1. Load (once; reused across runs): a named scratch database `bench_ops_e<events>_p<payouts>` on the
   bench server, kept unless --fresh (or dropped after the run with --drop). Realistic streams,
   generated in Python and written in bulk through the real `append_events` SQL function, --batch
   aggregates (escrows and payouts, with their ledger-group and provider-event streams) per call,
   on --workers connections; each call's events go through `periodya.projections.apply_all` in the
   same transaction, exactly as the live path does, so every view is real. The mix, per payee: one
   escrow funded and released (fee to revenue), then its payouts: 85% FINALIZED through a webhook,
   5% FAILED at the provider (funds reversed), 5% still SENT, the rest REQUESTED (outbox backlog).
   About 8.4 events per payout and 4 per escrow; escrows fill the --events budget. Also a month of
   the runbook's cron history in job_runs (--job-runs), as a scheduler leaves it.
2. Health: a real `periodya serve` process on the database, an admin session, and a keep-alive client
   doing --requests sequential GET /api/admin/ops/health (after a warm-up): p50/p99; then the same
   number of Prometheus scrapes, GET /metrics, on the same process and connection (its health gauges
   read the same views health does), and a check that the scrape's gauges equal health's fields.
3. Sentinel, in-process (periodya.runners.sentinel.run): `full`, then `recent` right after it (nothing
   new), then `recent` after a slice of new traffic (--recent-payouts payouts' events, appended the same
   way).
Targets: health p99 < 50 ms; metrics scrape p99 < 50 ms; sentinel full < 10 s. PASS/MISS, never a
non-zero exit for a miss. On a miss (or with --profile): per-check sentinel timings, where the slowest
check spends its time, and EXPLAIN ANALYZE of the slow SQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import _common as c
from bench._ops_load import Plan, check_shapes, load, prepare
from bench._ops_profile import profile_health, profile_sentinel
from periodya import db
from periodya.config import Settings

TARGET_HEALTH_P99_MS = 50.0
TARGET_SCRAPE_P99_MS = 50.0
TARGET_SENTINEL_FULL_S = 10.0


# --- health over HTTP ------------------------------------------------------------------------------

@asynccontextmanager
async def serving(url: str) -> AsyncIterator[str]:
    """`periodya serve` as its own process on the loaded database, for the block; yields its base URL."""
    port = c.free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="periodya-bench-ops-") as tmp:
        async with c.children(Path(tmp)) as procs:
            await procs.periodya("serve", ["serve", "--host", "127.0.0.1", "--port", str(port)],
                                 c.child_env({"DATABASE_URL": url, "PERIODYA_LOG_LEVEL": "warning"}),
                                 ready=f"{base}/livez").start(seconds=30)
            yield base


async def admin_token(pool: asyncpg.Pool) -> str:
    from periodya.admin import sessions, users
    from periodya.eventstore import EventStore
    from periodya.handlers.unit_of_work import Meta

    user_id = await pool.fetchval("SELECT user_id FROM admin_users WHERE email = 'bench-ops@example.com'")
    if user_id is None:
        user_id = await users.create_user(EventStore(pool), "bench-ops@example.com", uuid.uuid4().hex,
                                          meta=Meta(actor="bench"))
    token, _ = await sessions.create_session(pool, user_id)
    return token


async def measure_get(base: str, path: str, requests: int, warmup: int,
                      headers: dict[str, str] | None = None) -> tuple[c.Result, str]:
    """Sequential GETs of `path` on one keep-alive connection (as one Prometheus server scrapes a target, or
    one dashboard polls health); returns the figures and the last answer's text."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        text = ""

        async def one(_worker: int) -> None:
            nonlocal text
            async with http.get(f"{base}{path}") as r:
                assert r.status == 200, await r.text()
                text = await r.text()

        for _ in range(warmup):
            await one(0)
        result = await c.drive_async(one, 1, count=requests)
    return result, text


async def measure_health(base: str, token: str, requests: int, warmup: int) -> tuple[c.Result, dict[str, Any]]:
    result, text = await measure_get(base, "/api/admin/ops/health", requests, warmup,
                                     {"Authorization": f"Bearer {token}"})
    return result, json.loads(text)


async def measure_scrape(base: str, requests: int, warmup: int) -> tuple[c.Result, str]:
    return await measure_get(base, "/metrics", requests, warmup)


SCRAPE_VS_HEALTH = {"periodya_outbox_pending": "payoutOutboxPending",
                    "periodya_outbox_sending_stuck": "payoutOutboxSendingStuck",
                    "periodya_payouts_sent_stuck": "providerPayoutSentStuck10m",
                    "periodya_alerts_critical_open": "integrityAlertsCriticalOpen",
                    "periodya_webhooks_pending": "webhooksPending"}


def scrape_matches_health(text: str, health: dict[str, Any]) -> list[str]:
    """The scrape's runbook gauges against health's fields (nothing was written between them)."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
    return [f"{gauge}={values.get(gauge)} but {field}={health.get(field)}" for gauge, field in SCRAPE_VS_HEALTH.items()
            if values.get(gauge) != health.get(field)]


# --- the sentinel ----------------------------------------------------------------------------------

@dataclass
class SentinelRun:
    mode: str
    label: str
    seconds: float
    summary: dict[str, Any]


@dataclass
class Figures:
    health: c.Result | None = None
    health_body: dict[str, Any] = field(default_factory=dict)
    scrape: c.Result | None = None
    scrape_bytes: int = 0
    scrape_mismatch: list[str] = field(default_factory=list)
    sentinel: list[SentinelRun] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def deps_for(pool: asyncpg.Pool, url: str) -> Any:
    from periodya.deps import Deps
    from periodya.eventstore import EventStore
    from periodya.http.app import NoProvider

    return Deps(EventStore(pool), NoProvider(), Settings.from_env({"DATABASE_URL": url}))  # type: ignore[arg-type]


async def run_sentinel(deps: Any, mode: str, label: str) -> SentinelRun:
    from periodya.runners import sentinel

    started = time.perf_counter()
    summary = await sentinel.run(deps, mode=mode)
    return SentinelRun(mode, label, time.perf_counter() - started, summary.as_json())




# --- the run ---------------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> Figures:
    check_shapes()
    server = c.server_url()
    print(f"server: {c.describe_server(server)}; {c.machine_load()}")
    url, meta = await prepare(server, args)
    figures = Figures()
    pool = await db.connect_pool(url, min_size=2, max_size=10)
    try:
        figures.counts = {
            "events": await pool.fetchval("SELECT count(*) FROM events"),
            "payouts": await pool.fetchval("SELECT count(*) FROM payouts"),
            "ledger entries": await pool.fetchval("SELECT count(*) FROM ledger_entries"),
            "balances": await pool.fetchval("SELECT count(*) FROM balances"),
            "job_runs": await pool.fetchval("SELECT count(*) FROM job_runs"),
            "alerts": await pool.fetchval("SELECT count(*) FROM alerts"),
        }
        print("database: " + ", ".join(f"{v:,} {k}" for k, v in figures.counts.items()))
        await c.settle(pool)

        async with serving(url) as base:
            token = await admin_token(pool)
            figures.health, figures.health_body = await measure_health(base, token, args.requests, args.warmup)
            figures.scrape, text = await measure_scrape(base, args.requests, args.warmup)
            figures.scrape_bytes = len(text.encode())
            figures.scrape_mismatch = scrape_matches_health(text, figures.health_body)
        print(f"health: {args.requests} sequential requests on one keep-alive connection: "
              f"p50 {c.ms(figures.health.p50_ms)} ms, p99 {c.ms(figures.health.p99_ms)} ms")
        print(f"metrics: {args.requests} sequential scrapes on one keep-alive connection: "
              f"p50 {c.ms(figures.scrape.p50_ms)} ms, p99 {c.ms(figures.scrape.p99_ms)} ms "
              f"({figures.scrape_bytes:,} bytes; gauges {'equal health' if not figures.scrape_mismatch else 'DIFFER: '}"
              f"{'; '.join(figures.scrape_mismatch)})")

        deps = deps_for(pool, url)
        await c.settle(pool)
        had_checkpoint = bool(await pool.fetchval("SELECT 1 FROM checkpoints WHERE name = 'sentinel'"))
        for label, mode in ((f"full ({'after earlier runs' if had_checkpoint else 'first run: no checkpoint'})",
                             "full"), ("full (steady state: right after a run)", "full"),
                            ("recent (nothing new)", "recent")):
            figures.sentinel.append(await run_sentinel(deps, mode, label))
            print(f"sentinel {label}: {figures.sentinel[-1].seconds:.2f} s")
        prefix = f"r{uuid.uuid4().hex[:6]}-"
        extra = Plan(int(Plan(0, args.recent_payouts).payout_events) + 40, args.recent_payouts,
                     seed=random.randrange(1 << 62))  # fresh provider ids on a reused database
        added, _ = await load(pool, extra, args.batch, 1, prefix=prefix, progress=False)
        figures.sentinel.append(await run_sentinel(deps, "recent", f"recent ({added:,} new events)"))
        print(f"sentinel {figures.sentinel[-1].label}: {figures.sentinel[-1].seconds:.2f} s")

        health_miss = figures.health.p99_ms >= TARGET_HEALTH_P99_MS or figures.scrape.p99_ms >= TARGET_SCRAPE_P99_MS
        full_miss = any(r.seconds >= TARGET_SENTINEL_FULL_S for r in figures.sentinel if r.mode == "full")
        report(figures, args, meta)
        if args.profile or health_miss:
            await profile_health(pool, deps)
        if args.profile or full_miss:
            await profile_sentinel(pool, deps)
    finally:
        await pool.close()
        if args.drop:
            await c.admin_execute(server, f'DROP DATABASE IF EXISTS "{c.database_name(url)}" WITH (FORCE)')
    return figures


def report(f: Figures, args: argparse.Namespace, meta: dict[str, Any]) -> None:
    assert f.health is not None and f.scrape is not None
    c.print_table(["figure", "value"], [
        ["health p50", f"{c.ms(f.health.p50_ms)} ms"],
        ["health p99", f"{c.ms(f.health.p99_ms)} ms"],
        ["health max", f"{c.ms(f.health.latencies[-1] * 1000)} ms"],
        ["metrics scrape p50", f"{c.ms(f.scrape.p50_ms)} ms"],
        ["metrics scrape p99", f"{c.ms(f.scrape.p99_ms)} ms"],
        ["metrics scrape max", f"{c.ms(f.scrape.latencies[-1] * 1000)} ms"],
        ["metrics scrape size / gauges vs health", f"{f.scrape_bytes:,} bytes / "
                                                   f"{'equal' if not f.scrape_mismatch else 'DIFFER'}"],
        ["health status / open alerts", f"{f.health_body.get('status')} / {f.health_body.get('alertsOpen')}"],
        *[[f"sentinel {r.label}", f"{r.seconds:.3f} s"] for r in f.sentinel],
    ], title=f"ops figures on {f.counts['events']:,} events / {f.counts['payouts']:,} payouts; {c.machine_load()}")
    c.print_table(["target", "figure", "result"], [
        [f"health p99 < {TARGET_HEALTH_P99_MS:g} ms", f"{c.ms(f.health.p99_ms)} ms",
         c.verdict(f.health.p99_ms < TARGET_HEALTH_P99_MS)],
        [f"metrics scrape p99 < {TARGET_SCRAPE_P99_MS:g} ms", f"{c.ms(f.scrape.p99_ms)} ms",
         c.verdict(f.scrape.p99_ms < TARGET_SCRAPE_P99_MS and not f.scrape_mismatch)],
        *[[f"sentinel {r.label} < {TARGET_SENTINEL_FULL_S:g} s", f"{r.seconds:.2f} s",
           c.verdict(r.seconds < TARGET_SENTINEL_FULL_S)] for r in f.sentinel if r.mode == "full"],
    ], title="targets")
    print(f"\nsentinel full outcomes: {f.sentinel[0].summary['outcomes']}")



def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ops", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to load (default 1,000,000)")
    parser.add_argument("--payouts", type=int, default=100_000, help="payouts among them (default 100,000)")
    parser.add_argument("--job-runs", type=int, default=100_000,
                        help="rows of cron history in job_runs (default 100,000: about a month)")
    parser.add_argument("--batch", type=int, default=500, help="aggregates per append_events call (default 500)")
    parser.add_argument("--workers", type=int, default=3, help="loading connections (default 3)")
    parser.add_argument("--requests", type=int, default=500, help="health requests measured (default 500)")
    parser.add_argument("--warmup", type=int, default=20, help="health requests before measuring (default 20)")
    parser.add_argument("--recent-payouts", type=int, default=1_000,
                        help="payouts of new traffic before the last recent run (default 1,000)")
    parser.add_argument("--fresh", action="store_true", help="drop and reload the named database")
    parser.add_argument("--drop", action="store_true", help="drop the named database at the end")
    parser.add_argument("--profile", action="store_true", help="profile even when the targets are met")
    args = parser.parse_args(list(argv))
    if args.events < 1 or args.payouts < 1 or args.batch < 1 or args.workers < 1 or args.requests < 1:
        parser.error("--events, --payouts, --batch, --workers and --requests must be positive")
    asyncio.run(run(args))
    return 0
