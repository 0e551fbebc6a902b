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
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import _common as c
from periodya import db
from periodya.config import Settings
from periodya.event_registry import REGISTRY
from periodya.eventstore.hashing import canonical_json
from periodya.eventstore.model import RecordedEvent
from periodya.projections import apply_all

TARGET_HEALTH_P99_MS = 50.0
TARGET_SCRAPE_P99_MS = 50.0
TARGET_SENTINEL_FULL_S = 10.0
APPEND = "SELECT seq, tx, stream_id, stream_version, recorded_at FROM append_events($1, $2, $3, $4, $5, $6, $7)"
META_TABLE = "public.bench_ops_meta"
EVENTS_PER_ESCROW = 4
MIX = (("finalized", 0.85), ("failed", 0.05), ("sent", 0.05))  # the rest: requested
EVENTS_PER_KIND = {"finalized": 9, "failed": 9, "sent": 4, "requested": 2}
CASH, REVENUE = "cash:platform", "revenue:platform"
REPO = Path(__file__).resolve().parent.parent

Event = tuple[str, dict[str, Any], dict[str, Any]]  # type, data, metadata
Stream = tuple[str, list[Event]]


# --- the generated log ---------------------------------------------------------------------------

def _meta(actor: str) -> dict[str, Any]:
    return {"actor": actor, "schemaVersion": 1}


def _transfer(gid: str, kind: str, subject: str, currency: str, *moves: tuple[str, str, int]) -> Stream:
    entries = []
    for source, target, amount in moves:
        if amount:
            entries += [{"account": source, "currency": currency, "debit": amount, "credit": 0},
                        {"account": target, "currency": currency, "debit": 0, "credit": amount}]
    data = {"groupId": gid, "kind": kind, "subject": subject, "entries": entries}
    return f"ledger-{gid}", [("LedgerGroupPosted", data, _meta("bench"))]


def escrow_streams(escrow_id: str, payee: str, amount: int, fee: int, currency: str) -> list[Stream]:
    """Funded, then released to one payee (fee to revenue): 2 escrow events, 2 ledger groups."""
    sid = f"escrow-{escrow_id}"
    funded = _transfer(f"{sid}@1:escrow_funded", "escrow_funded", sid, currency, (CASH, f"escrow:{escrow_id}",
                                                                                  amount + fee))
    released = _transfer(f"{sid}@2:escrow_released", "escrow_released", sid, currency,
                         (f"escrow:{escrow_id}", f"payable:{payee}", amount), (f"escrow:{escrow_id}", REVENUE, fee))
    events: list[Event] = [
        ("EscrowFunded", {"escrowId": escrow_id, "amount": amount + fee, "currency": currency}, _meta("service")),
        ("EscrowReleased", {"escrowId": escrow_id, "payeeId": payee, "amount": amount, "feeAmount": fee,
                            "currency": currency}, _meta("service"))]
    return [(sid, events), funded, released]


def payout_streams(pid: str, payee: str, amount: int, currency: str, kind: str, rng: random.Random) -> list[Stream]:
    """One payout's streams as the live path writes them, up to `kind` (requested|sent|finalized|failed)."""
    sid = f"payout-{pid}"
    out: list[Stream] = [_transfer(f"{sid}@1:payout_reserved", "payout_reserved", sid, currency,
                                   (f"payable:{payee}", f"inflight:{payee}", amount))]
    events: list[Event] = [("PayoutRequested", {"payoutId": pid, "payeeId": payee, "amount": amount,
                                                "currency": currency, "destination": f"ba_{payee}"},
                            _meta("service"))]
    if kind != "requested":
        ppid = f"po_{rng.getrandbits(96):024x}"
        events += [("PayoutSendStarted", {"attempt": 1}, _meta("runner:outbox")),
                   ("PayoutSent", {"providerPayoutId": ppid, "source": "outbox"}, _meta("runner:outbox"))]
    if kind in ("finalized", "failed"):
        evt = f"evt_{rng.getrandbits(96):024x}"
        paid = kind == "finalized"
        received = {"eventId": evt, "type": "payout.paid" if paid else "payout.failed", "providerPayoutId": ppid,
                    "payoutId": pid, "status": "paid" if paid else "failed",
                    "failureCode": None if paid else "account_closed",
                    "failureMessage": None if paid else "The bank account has been closed",
                    "created": int(time.time()), "amount": amount, "currency": currency}
        out.append((f"provider-event-{evt}", [
            ("ProviderEventReceived", received, {"actor": "provider", "providerEventId": evt, "schemaVersion": 1}),
            ("ProviderEventApplied", {"outcome": "applied"}, _meta("runner:webhooks"))]))
        if paid:
            gid = f"{sid}@5:payout_finalized"
            events += [("PayoutProviderPaid", {"providerPayoutId": ppid, "providerEventId": evt, "source": "webhook"},
                        _meta("runner:webhooks")),
                       ("PayoutFinalized", {"groupId": gid, "source": "webhook"}, _meta("runner:webhooks"))]
            out.append(_transfer(gid, "payout_finalized", sid, currency, (f"inflight:{payee}", CASH, amount)))
        else:
            gid = f"{sid}@5:payout_reversed"
            events += [("PayoutProviderFailed", {"providerPayoutId": ppid, "failureCode": "account_closed",
                                                 "failureMessage": "The bank account has been closed",
                                                 "providerEventId": evt, "source": "webhook"},
                        _meta("runner:webhooks")),
                       ("PayoutReversed", {"groupId": gid, "compensating": False}, _meta("runner:webhooks"))]
            out.append(_transfer(gid, "payout_reversed", sid, currency, (f"inflight:{payee}", f"payable:{payee}",
                                                                        amount)))
    return [(sid, events), *out]


def check_shapes() -> None:
    """Every generated event is exactly what the real model dumps (same keys, same values): a drift
    between this generator and the domain fails here, before anything is loaded."""
    rng = random.Random(0)
    streams = escrow_streams("esc-x", "payee-x", 1000, 10, "USD")
    for kind in ("finalized", "failed"):
        streams += payout_streams(f"po-{kind}", "payee-x", 100, "USD", kind, rng)
    for _, events in streams:
        for etype, data, _ in events:
            model = REGISTRY.model_for(etype).model_validate(data)
            dumped = REGISTRY.to_new(model).data
            assert dumped == data, (etype, data, dumped)


@dataclass
class Plan:
    events: int
    payouts: int
    seed: int = 1

    @property
    def payout_events(self) -> float:
        requested = 1 - sum(share for _, share in MIX)
        return self.payouts * (sum(share * EVENTS_PER_KIND[k] for k, share in MIX)
                               + requested * EVENTS_PER_KIND["requested"])

    @property
    def payees(self) -> int:
        """One escrow per payee; escrows fill what the payouts leave of the events budget."""
        return max(1, int((self.events - self.payout_events) // EVENTS_PER_ESCROW))


def _kind(x: float) -> str:
    for kind, share in MIX:
        if x < share:
            return kind
        x -= share
    return "requested"


def units(plan: Plan, prefix: str = "") -> Iterator[tuple[int, list[Stream]]]:
    """Per payee: (aggregates, streams) with the escrow first, so balances never dip below zero."""
    rng = random.Random(plan.seed)
    payees = plan.payees
    for p in range(payees):
        n = plan.payouts // payees + (1 if p < plan.payouts % payees else 0)
        payee = f"{prefix}payee-{p:07d}"
        currency = "EUR" if p % 10 == 9 else "USD"
        amounts = [rng.randrange(1_000, 100_000) for _ in range(n)]
        fee = rng.randrange(0, 5_000)
        streams = escrow_streams(f"{prefix}esc-{p:07d}", payee, sum(amounts) + rng.randrange(0, 50_000), fee,
                                 currency)
        for i, amount in enumerate(amounts):
            pid = f"{prefix}po-{p:07d}-{i:03d}"
            streams += payout_streams(pid, payee, amount, currency, _kind(rng.random()), rng)
        yield 1 + n, streams


def batches(plan: Plan, size: int, prefix: str = "") -> Iterator[list[Stream]]:
    batch: list[Stream] = []
    aggregates = 0
    for n, streams in units(plan, prefix):
        batch += streams
        aggregates += n
        if aggregates >= size:
            yield batch
            batch, aggregates = [], 0
    if batch:
        yield batch


async def append_batch(conn: asyncpg.Connection, streams: list[Stream]) -> int:
    """One append_events call (every stream new) and apply_all on its events, in one transaction. No
    advisory-lock keys are passed: the loader is the database's only writer, and thousands of keys per
    call would fill the shared lock table."""
    ids, ev_stream, types, datas, metas = [], [], [], [], []
    flat: list[Event] = []
    for index, (sid, events) in enumerate(streams, start=1):
        ids.append(sid)
        for ev in events:
            ev_stream.append(index)
            types.append(ev[0])
            datas.append(canonical_json(ev[1]))
            metas.append(canonical_json(ev[2]))
            flat.append(ev)
    async with conn.transaction():
        rows = await conn.fetch(APPEND, [], ids, [0] * len(ids), ev_stream, types, datas, metas)
        recorded = [RecordedEvent(r["seq"], r["tx"], r["stream_id"], r["stream_version"], ev[0], ev[1], ev[2],
                                  r["recorded_at"]) for r, ev in zip(rows, flat, strict=True)]
        await apply_all(conn, recorded)
    return len(recorded)


async def load(pool: asyncpg.Pool, plan: Plan, batch: int, workers: int, prefix: str = "",
               progress: bool = True) -> tuple[int, float]:
    queue: asyncio.Queue[list[Stream] | None] = asyncio.Queue(maxsize=workers * 2)
    loaded = [0]
    started = time.perf_counter()
    step = max(plan.events // 10, 1)
    next_report = [step]

    async def worker() -> None:
        async with pool.acquire() as conn:
            while (item := await queue.get()) is not None:
                n = await append_batch(conn, item)  # (not `loaded[0] += await ...`: that reads before awaiting)
                loaded[0] += n
                if progress and loaded[0] >= next_report[0]:
                    next_report[0] += step
                    elapsed = time.perf_counter() - started
                    print(f"  {loaded[0]:>10,} events  {elapsed:6.1f} s  {loaded[0] / elapsed:,.0f} events/s",
                          flush=True)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(worker()) for _ in range(workers)]
        for item in batches(plan, batch, prefix):
            await queue.put(item)
            await asyncio.sleep(0)  # let the workers send while the next batch is generated
        for _ in tasks:
            await queue.put(None)
    return loaded[0], time.perf_counter() - started


JOB_RUNS_SQL = """
INSERT INTO job_runs (job, mode, trigger, started_at, finished_at, ok, summary)
SELECT j.job, j.mode, 'cron', t, t + interval '40 ms', true,
       jsonb_build_object('job', j.job, 'processed', 0, 'succeeded', 0, 'failed', 0, 'skipped', 0,
                          'durationMs', 40, 'outcomes', '{}'::jsonb)
  FROM (VALUES ('outbox', NULL, 1), ('webhooks', NULL, 1), ('reconcile-pull', NULL, 5), ('repair', NULL, 15),
               ('sentinel', 'recent', 60), ('sentinel', 'full', 1440)) AS j(job, mode, every),
       generate_series(now() - $1::interval, now(), interval '1 minute') AS t
 WHERE (extract(epoch FROM date_trunc('minute', t))::bigint / 60) % j.every = 0"""


async def job_history(pool: asyncpg.Pool, rows: int) -> int:
    """About `rows` job_runs rows: the runbook's cron table over as many days as that takes (~3,300/day)."""
    if rows <= 0:
        return 0
    per_day = 1440 * 2 + 288 + 96 + 24 + 1
    minutes = max(1, int(rows / per_day * 1440))
    await pool.execute(JOB_RUNS_SQL, timedelta(minutes=minutes))
    return int(await pool.fetchval("SELECT count(*) FROM job_runs"))


# --- the named database ----------------------------------------------------------------------------

async def prepare(server: str, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The loaded database's URL (loading it if needed) and what is in it."""
    name = f"bench_ops_e{args.events}_p{args.payouts}"
    url = c.with_database(server, name)
    admin = await asyncpg.connect(server)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and not args.fresh:
            conn = await asyncpg.connect(url)
            try:
                meta = await conn.fetchrow(f"SELECT * FROM {META_TABLE}") if await conn.fetchval(
                    "SELECT to_regclass($1)", META_TABLE) else None
            finally:
                await conn.close()
            if meta is not None and meta["complete"]:
                print(f"reusing database {name} (loaded {meta['loaded_at']:%Y-%m-%d %H:%M}, "
                      f"{meta['events']:,} events in {meta['seconds']:.0f} s; --fresh to reload)")
                return url, dict(meta)
            print(f"database {name} exists but its load did not finish: reloading")
        if exists:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return url, await fill(url, args)


async def fill(url: str, args: argparse.Namespace) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
        await conn.execute(f"CREATE TABLE {META_TABLE} (loaded_at timestamptz NOT NULL DEFAULT now(), events bigint, "
                           "payouts bigint, payees bigint, seconds float8, job_runs bigint, complete bool NOT NULL "
                           "DEFAULT false)")
    finally:
        await conn.close()
    plan = Plan(args.events, args.payouts)
    print(f"loading ~{args.events:,} events: {plan.payouts:,} payouts over {plan.payees:,} payees (one escrow "
          f"each), {args.batch} aggregates per append_events call, {args.workers} workers")
    pool = await db.connect_pool(url, min_size=args.workers, max_size=args.workers + 1)
    try:
        events, seconds = await load(pool, plan, args.batch, args.workers)
        print(f"loaded {events:,} events in {seconds:.1f} s ({events / seconds:,.0f} events/s, projections "
              "included)")
        runs = await job_history(pool, args.job_runs)
        started = time.perf_counter()
        await pool.execute("VACUUM (ANALYZE)")
        print(f"job_runs: {runs:,} rows of cron history; VACUUM ANALYZE {time.perf_counter() - started:.1f} s")
        await pool.execute(f"INSERT INTO {META_TABLE} (events, payouts, payees, seconds, job_runs, complete) "
                           "VALUES ($1, $2, $3, $4, $5, true)", events, plan.payouts, plan.payees, seconds, runs)
        return dict(await pool.fetchrow(f"SELECT * FROM {META_TABLE}"))
    finally:
        await pool.close()


# --- health over HTTP ------------------------------------------------------------------------------

async def serve(url: str) -> tuple[asyncio.subprocess.Process, str, Path]:
    """`periodya serve` as its own process on the loaded database; returns it, its base URL and log."""
    port = c.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERIODYA_")}
    env.update({"DATABASE_URL": url, "PERIODYA_LOG_LEVEL": "warning", "PYTHONPATH": str(REPO)})
    log = Path(tempfile.gettempdir()) / f"bench-ops-serve-{port}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "periodya", "serve", "--host", "127.0.0.1", "--port", str(port), env=env,
            stdout=out, stderr=asyncio.subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        failure = await c.await_ready(proc, http, f"{base}/livez", seconds=30)
    if failure is None:
        return proc, base, log
    await c.stop_process(proc, grace=10)
    raise RuntimeError(f"periodya serve {failure}: {log.read_text()}")


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
    from periodya.eventstore import EventStore
    from periodya.http.app import NoProvider
    from periodya.runners.base import Deps

    return Deps(EventStore(pool), NoProvider(), Settings.from_env({"DATABASE_URL": url}))  # type: ignore[arg-type]


async def run_sentinel(deps: Any, mode: str, label: str) -> SentinelRun:
    from periodya.runners import sentinel

    started = time.perf_counter()
    summary = await sentinel.run(deps, mode=mode)
    return SentinelRun(mode, label, time.perf_counter() - started, summary.as_json())


async def check_times(deps: Any, full: bool) -> list[tuple[str, float, int, int]]:
    """Each sentinel check alone on the same scope: (name, seconds, examined, findings)."""
    from periodya.runners.sentinel import _scope
    from periodya.runners.sentinel_checks import CHECKS

    scope, _ = await _scope(deps, full=full)
    rows = []
    for check in CHECKS:
        started = time.perf_counter()
        async with deps.store.pool.acquire() as conn:
            result = await check(deps, conn, scope)
        rows.append((check.__name__, time.perf_counter() - started, result.examined, len(result.findings)))
    return rows


async def explain(pool: asyncpg.Pool, sql: str, *args: Any) -> list[str]:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
    return [r[0] for r in rows]


async def hash_chain_split(pool: asyncpg.Pool) -> list[tuple[str, float]]:
    """Where the full hash-chain check's time goes, and two what-ifs that check the same things."""
    from periodya.eventstore.hashing import chain_hash

    cols = "seq, stream_id, stream_version, event_type, data, metadata, recorded_at, prev_hash, hash"
    out = []

    async def scan(label: str, order: str, compute: bool) -> None:
        started = time.perf_counter()
        bad = 0
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            async for row in conn.cursor(f"SELECT {cols} FROM events ORDER BY {order}", prefetch=2000):
                if compute:
                    bad += chain_hash(bytes(row["prev_hash"]), row["stream_id"], row["stream_version"],
                                      row["event_type"], row["recorded_at"], row["data"], row["metadata"]
                                      ) != bytes(row["hash"])
        out.append((label + (f" ({bad} mismatches)" if compute else ""), time.perf_counter() - started))

    await scan("read every event in (stream_id, stream_version) order (as verify_chains does)",
               "stream_id, stream_version", False)
    await scan("  + recompute each hash in Python (= the check)", "stream_id, stream_version", True)
    await scan("what-if: read in seq (physical) order", "seq", False)
    await scan("what-if:   + recompute each row's hash from its own prev_hash", "seq", True)
    links = """SELECT count(*) FROM (SELECT stream_version, prev_hash, lag(hash) OVER w AS prev,
                  lag(stream_version) OVER w AS prev_version FROM events WINDOW w AS (PARTITION BY stream_id
                  ORDER BY stream_version)) x
                WHERE prev_hash <> coalesce(prev, decode(repeat('00', 32), 'hex'))
                   OR stream_version <> coalesce(prev_version, 0) + 1"""
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")
        broken = await conn.fetchval(links)
    out.append((f"what-if:   + links and version gaps in SQL (window over the index; {broken} broken)",
                time.perf_counter() - started))
    return out


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

        proc, base, log = await serve(url)
        try:
            token = await admin_token(pool)
            figures.health, figures.health_body = await measure_health(base, token, args.requests, args.warmup)
            figures.scrape, text = await measure_scrape(base, args.requests, args.warmup)
            figures.scrape_bytes = len(text.encode())
            figures.scrape_mismatch = scrape_matches_health(text, figures.health_body)
        finally:
            await c.stop_process(proc, grace=10)
            log.unlink(missing_ok=True)
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
            admin = await asyncpg.connect(server)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{c.database_name(url)}" WITH (FORCE)')
            finally:
                await admin.close()
    return figures


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


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
         verdict(f.health.p99_ms < TARGET_HEALTH_P99_MS)],
        [f"metrics scrape p99 < {TARGET_SCRAPE_P99_MS:g} ms", f"{c.ms(f.scrape.p99_ms)} ms",
         verdict(f.scrape.p99_ms < TARGET_SCRAPE_P99_MS and not f.scrape_mismatch)],
        *[[f"sentinel {r.label} < {TARGET_SENTINEL_FULL_S:g} s", f"{r.seconds:.2f} s",
           verdict(r.seconds < TARGET_SENTINEL_FULL_S)] for r in f.sentinel if r.mode == "full"],
    ], title="targets")
    print(f"\nsentinel full outcomes: {f.sentinel[0].summary['outcomes']}")


JOBS_LATERAL = """
SELECT r.job, r.mode, r.trigger, r.started_at, r.finished_at, r.ok, r.summary, r.error
  FROM unnest($1::text[], $2::text[]) AS k(job, mode)
 CROSS JOIN LATERAL (SELECT * FROM job_runs j WHERE j.job = k.job AND j.mode IS NOT DISTINCT FROM k.mode
                      ORDER BY j.started_at DESC LIMIT 1) r"""


async def timed(pool: asyncpg.Pool, sql: str, *params: Any, n: int = 20) -> float:
    """Median milliseconds of `sql` over n runs."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await pool.fetch(sql, *params)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2] * 1000


async def profile_health(pool: asyncpg.Pool, deps: Any) -> None:
    from periodya.handlers.health import _COUNTS, health
    from periodya.runners import JOBS

    print("\nhealth, server side (in-process, the same handler and SQL):")
    times = []
    for _ in range(50):
        started = time.perf_counter()
        await health(deps)
        times.append(time.perf_counter() - started)
    times.sort()
    print(f"  handler p50 {times[len(times) // 2] * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms")
    counts_args = (deps.minutes_ago(deps.settings.sending_stuck_minutes),
                   deps.minutes_ago(deps.settings.sent_stuck_minutes))
    jobs_sql = ("SELECT DISTINCT ON (job, mode) job, mode, trigger, started_at, finished_at, ok, summary, error "
                "FROM job_runs ORDER BY job, mode, started_at DESC")
    missing_sql = ("SELECT a.alert_id, a.subject, a.raised_at, a.details->>'providerPayoutId' AS provider_payout_id "
                   "FROM alerts a WHERE a.code = 'FINALIZE_MISSING' AND a.status <> 'RESOLVED' ORDER BY a.raised_at")
    keys = [(j, None) for j in JOBS if j != "sentinel"] + [("sentinel", "recent"), ("sentinel", "full")]
    lateral_args = ([k[0] for k in keys], [k[1] for k in keys])
    c.print_table(["health query", "median ms"], [
        ["counts (_COUNTS)", f"{await timed(pool, _COUNTS, *counts_args):.2f}"],
        ["finalizeMissing", f"{await timed(pool, missing_sql):.2f}"],
        [f"jobs: DISTINCT ON over job_runs ({await pool.fetchval('SELECT count(*) FROM job_runs'):,} rows)",
         f"{await timed(pool, jobs_sql, n=5):.2f}"],
        ["what-if jobs: LATERAL ... LIMIT 1 per known (job, mode), existing index",
         f"{await timed(pool, JOBS_LATERAL, *lateral_args):.2f}"],
    ], title="  where the health request's SQL time goes")
    same = [tuple(r) for r in await pool.fetch(JOBS_LATERAL, *lateral_args)]
    assert sorted(same, key=str) == sorted((tuple(r) for r in await pool.fetch(jobs_sql)), key=str), \
        "the what-if query must return the same rows"
    plan = await explain(pool, jobs_sql)
    print("  EXPLAIN ANALYZE jobs:")
    for line in plan:
        print("    " + line)


async def profile_sentinel(pool: asyncpg.Pool, deps: Any) -> None:
    from periodya.runners.sentinel import _scope
    from periodya.runners.sentinel_checks import _LOG_BALANCES

    print("\nsentinel full, check by check (same scope, each run alone):")
    started = time.perf_counter()
    await _scope(deps, full=True)
    scope_s = time.perf_counter() - started
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")
        all_streams = time.perf_counter()
        await conn.fetch("SELECT DISTINCT ON (stream_id) stream_id, tx::text::bigint AS tx, seq FROM events "
                         "WHERE (tx, seq) > ('0'::xid8, 0) AND tx < pg_snapshot_xmin(pg_current_snapshot())")
        all_streams_s = time.perf_counter() - all_streams
    rows = await check_times(deps, full=True)
    c.print_table(["step", "seconds", "examined", "findings"],
                  [[n, f"{s:.2f}", f"{e:,}", f] for n, s, e, f in sorted(rows, key=lambda r: -r[1])]
                  + [["_scope (streams since the checkpoint; full mode does not use them)", f"{scope_s:.2f}", "", ""],
                     ["_scope with no checkpoint (a first run: every stream of the log)", f"{all_streams_s:.2f}",
                      "", ""]])
    if max(rows, key=lambda r: r[1])[0] == "hash_chain":
        c.print_table(["hash_chain, full", "seconds"], [[label, f"{sec:.2f}"] for label, sec in
                                                       await hash_chain_split(pool)],
                      title="where hash_chain's time goes (1 connection, this process)")
    for label, sql in [
        ("balance_drift (full: every LedgerGroupPosted's entries, from the log's jsonb)",
         _LOG_BALANCES.format(where="")),
        ("ledger_unbalanced (full: every group)", "SELECT group_id, currency, sum(debit), sum(credit), count(*) "
         "FROM ledger_entries GROUP BY group_id, currency"),
    ]:
        plan = await explain(pool, sql)
        print(f"\nEXPLAIN ANALYZE {label}:")
        for line in [*plan[:8], *[ln for ln in plan[8:] if "Execution Time" in ln]]:
            print("    " + line)


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
