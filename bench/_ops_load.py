"""`bench ops`' loaded database: a realistic log generated in Python and written in bulk, kept by name.

`prepare` returns the named database `bench_ops_e<events>_p<payouts>` (loading it when it is missing,
half-loaded or --fresh). Streams are generated here (`escrow_streams`, `payout_streams`; `check_shapes`
holds them to the real model's dump) and written through the real `append_events` SQL function, each
call's events applied by `periodya.projections.apply_all` in the same transaction, as the live path
does. Also a month of the runbook's cron history in job_runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from bench import _common as c
from periodya import db
from periodya.event_registry import REGISTRY
from periodya.eventstore.hashing import canonical_json
from periodya.eventstore.model import RecordedEvent
from periodya.projections import apply_all

APPEND = "SELECT seq, tx, stream_id, stream_version, recorded_at FROM append_events($1, $2, $3, $4, $5, $6, $7)"
META_TABLE = "public.bench_ops_meta"
EVENTS_PER_ESCROW = 4
MIX = (("finalized", 0.85), ("failed", 0.05), ("sent", 0.05))  # the rest: requested
EVENTS_PER_KIND = {"finalized": 9, "failed": 9, "sent": 4, "requested": 2}
CASH, REVENUE = "cash:platform", "revenue:platform"

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
