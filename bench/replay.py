"""Replay throughput: rebuild every projection from N events, next to a raw decoded read of the same events.

Loads N realistic events into a fresh scratch database through the real event store API
(EventStore.append, big multi-stream batches, several connections): each deal funds an escrow, releases
it to one of --payees payees (with a fee), requests a payout, sends it, the provider's webhook arrives
and is applied, and the payout is finalized (or, for one in ten, fails and is reversed), each step with
its ledger group. About 19 events per deal, built with the domain's own decide functions.

Then, in rounds (the median of each figure is reported):
  1. raw: the rebuild's own query, (tx, seq) order, through an asyncpg cursor with the same page size,
     jsonb decoded by the pool's codec (orjson) and nothing else done with the rows;
  2. rebuild (audit): what `periodya replay` runs (audit.engine.rebuild_into): every projection, the
     live apply functions, the log read in pages of the same size a page ahead on a second connection
     in the same snapshot, whole pages applied in batches of about audit.engine.APPLY_BATCH events
     (the projections' apply calls of a batch concurrently, one statement at a time), into UNLOGGED
     scratch tables (rolled back, as `periodya replay` without --swap does);
  3. rebuild (library): the same engine without a reader (the log read on the rebuilding connection),
     as replay_and_diff runs it, for comparison.
Each rebuild runs in a REPEATABLE READ transaction rolled back afterwards. Targets (on the audit
rebuild): >= 50,000 events/s and >= 20% of the raw rate. `--profile` runs one more audit rebuild under
cProfile and prints where the time goes; the client and server CPU seconds of every figure are printed
too (server: the backends' /proc times, when the server runs on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import _common as c
from periodya import db
from periodya.audit.engine import rebuild_into
from periodya.audit.scratch import new_name as scratch_name
from periodya.domain import escrow, payout
from periodya.domain.decision import Decision, posted
from periodya.domain.events import Event, ProviderEventApplied, ProviderEventReceived
from periodya.event_registry import REGISTRY
from periodya.eventstore import NO_STREAM, EventStore, StreamAppend
from periodya.handlers.lifecycle import chain
from periodya.projections.provider_events import stream as provider_stream

TARGET_RATE, TARGET_SHARE = 50_000, 0.20
EVENTS_PER_DEAL = 19  # 17 for a failed payout; the loader stops at --events exactly
NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
_RAW = ("SELECT seq, tx::text::bigint AS tx, stream_id, stream_version, event_type, data, metadata, recorded_at "
        "FROM periodya.events ORDER BY tx, seq")


def _meta(actor: str, n: int) -> dict[str, Any]:
    return {"actor": actor, "requestId": f"req-{n:08d}"}


def _stream(sid: str, decision: Decision, actor: str, n: int, extra: list[Event] = ()) -> list[StreamAppend]:  # type: ignore[assignment]
    meta = _meta(actor, n)
    out = [StreamAppend(sid, NO_STREAM, [REGISTRY.to_new(e, meta) for e in (*decision.events, *extra)])]
    out += [StreamAppend(f"ledger-{g.group_id}", NO_STREAM, [REGISTRY.to_new(posted(g, sid), meta)])
            for g in decision.groups]
    return out


def deal(n: int, payees: int) -> list[StreamAppend]:
    """One deal's streams, in an order where every prefix of the log keeps each account non-negative."""
    eid, pid, payee = f"e{n:08d}", f"p{n:08d}", f"payee{n % payees:05d}"
    amount, fee = 10_000 + (n * 7919) % 90_000, 100 + n % 900
    funded = escrow.decide_fund(None, escrow.FundEscrow(eid, amount + fee, "USD"))
    state = escrow.EscrowState(eid, "USD", funded=amount + fee, version=1)
    released = escrow.decide_release(state, escrow.ReleaseEscrow(eid, payee, amount, fee))
    appends = _stream(escrow.stream(eid), Decision(funded.events + released.events, funded.groups + released.groups),
                      "service:platform", n)
    ppid, evt = f"po_{pid}", f"evt_{pid}"
    request = payout.decide_request(None, payout.RequestPayout(pid, payee, amount, "USD", "ba_1"), amount)
    requested = payout.fold(list(request.events))
    failed = n % 10 == 9
    steps = [lambda s: payout.decide_start_send(s, NOW), lambda s: payout.decide_sent(s, ppid, "outbox"),
             (lambda s: payout.decide_provider_failed(s, ppid, "webhook", failure_code="account_closed",
                                                      provider_event_id=evt)) if failed else
             (lambda s: payout.decide_provider_paid(s, ppid, "webhook", evt)),
             lambda s: Decision() if failed else payout.decide_finalize(s, "webhook")]
    rest = chain(requested, *steps)
    appends += _stream(payout.stream(pid), Decision(request.events + rest.events, request.groups + rest.groups),
                       "runner:outbox", n)
    received = ProviderEventReceived(event_id=evt, type="payout.failed" if failed else "payout.paid",
                                     provider_payout_id=ppid, payout_id=pid, status="failed" if failed else "paid",
                                     created=1_767_614_400 + n)
    appends.append(StreamAppend(provider_stream(evt), NO_STREAM, [
        REGISTRY.to_new(received, {"actor": "provider", "providerEventId": evt}),
        REGISTRY.to_new(ProviderEventApplied(outcome="applied"), _meta("runner:webhooks", n))]))
    return appends


def batches(total: int, deals_per_append: int, payees: int) -> Iterator[list[StreamAppend]]:
    """Appends of `deals_per_append` deals each, exactly `total` events in all (the last deal may be cut)."""
    left, n, batch = total, 0, []
    while left > 0:
        appends = deal(n, payees)
        count = sum(len(a.events) for a in appends)
        if count > left:  # cut the last deal at a stream boundary, then fill with plain ledger-free events
            appends, count = _cut(appends, left)
        batch += appends
        left -= count
        n += 1
        if n % deals_per_append == 0 or left <= 0:
            yield batch
            batch = []


def _cut(appends: list[StreamAppend], left: int) -> tuple[list[StreamAppend], int]:
    kept: list[StreamAppend] = []
    for a in appends:
        take = list(a.events)[: left - sum(len(k.events) for k in kept)]
        if not take:
            break
        kept.append(StreamAppend(a.stream_id, a.expected_version, take))
    return kept, sum(len(k.events) for k in kept)


async def load(pool: asyncpg.Pool, total: int, deals_per_append: int, payees: int, workers: int) -> float:
    store = EventStore(pool)
    queue: asyncio.Queue[list[StreamAppend] | None] = asyncio.Queue(maxsize=workers * 2)

    async def worker() -> None:
        while (batch := await queue.get()) is not None:
            await store.append(batch)

    started = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for i, batch in enumerate(batches(total, deals_per_append, payees)):
        await queue.put(batch)
        if i % 20 == 0:
            await asyncio.sleep(0)
    for _ in tasks:
        await queue.put(None)
    await asyncio.gather(*tasks)
    return time.perf_counter() - started


Figure = tuple[int, float, float, float]  # events, wall seconds, client CPU seconds, server CPU seconds


def backend_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of server backends, from /proc; 0 when the server is elsewhere."""
    return sum(c.proc_cpu(pid) for pid in pids)


async def measured(run: Any, pids: list[int]) -> Figure:
    wall, cpu, server = time.perf_counter(), time.process_time(), backend_cpu(pids)
    n = await run()
    return n, time.perf_counter() - wall, time.process_time() - cpu, backend_cpu(pids) - server


async def raw_read(conn: asyncpg.Connection, page: int) -> int:
    n = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(_RAW)
        while rows := await cursor.fetch(page):
            n += len(rows)
    return n


async def rebuild_library(conn: asyncpg.Connection, page: int) -> int:
    # Statements cached under the previous round's scratch search_path are re-analysed on every
    # execution (the engine drops the cache itself); start this one clean too, for a fair figure.
    await conn.reload_schema_state()
    tx = conn.transaction(isolation="repeatable_read")
    await tx.start()
    try:
        await conn.execute("SET LOCAL statement_timeout = 0")
        return await rebuild_into(conn, scratch_name("bench"), None, None, batch=page)
    finally:
        await tx.rollback()


async def rebuild_audit(conn: asyncpg.Connection, reader: asyncpg.Connection, page: int) -> int:
    tx = conn.transaction(isolation="repeatable_read")
    await tx.start()
    try:
        await conn.execute("SET LOCAL statement_timeout = 0")
        return await rebuild_into(conn, scratch_name("bench"), None, None, reader=reader, batch=page)
    finally:
        await tx.rollback()


async def run(args: argparse.Namespace) -> int:
    server = c.server_url()
    async with c.scratch_database(server, "replay") as url:
        pool = await db.connect_pool(url, min_size=1, max_size=args.workers + 1)
        try:
            print(f"server: {c.describe_server(server)}; scratch database {c.database_name(url)}")
            print(f"before: {c.machine_load()}")
            seconds = await load(pool, args.events, args.deals_per_append, args.payees, args.workers)
            count = await pool.fetchval("SELECT count(*) FROM events")
            print(f"loaded {count:,} events through EventStore.append in {seconds:.1f} s "
                  f"({c.rate(count / seconds)} events/s, {args.workers} connections, "
                  f"{args.deals_per_append} deals per append)")
            await pool.execute("VACUUM ANALYZE periodya.events")
            await c.settle(pool)
            figures: dict[str, list[Figure]] = {"raw": [], "audit": [], "library": []}
            async with pool.acquire() as conn, pool.acquire() as reader:
                pids = [await c_.fetchval("SELECT pg_backend_pid()") for c_ in (conn, reader)]
                await raw_read(conn, args.prefetch)  # warm the cache: every figure reads hot pages
                for _ in range(args.rounds):
                    figures["raw"].append(await measured(lambda: raw_read(conn, args.prefetch), pids))
                    figures["audit"].append(await measured(lambda: rebuild_audit(conn, reader, args.prefetch), pids))
                    figures["library"].append(await measured(lambda: rebuild_library(conn, args.prefetch), pids))
                profile = await _profiled(conn, reader, args.prefetch) if args.profile else None
            print(f"after:  {c.machine_load()}")
        finally:
            await pool.close()
    report(figures, args)
    if profile:
        print("\ncProfile of one more rebuild (top functions by own time):\n" + profile)
    return 0


async def _profiled(conn: asyncpg.Connection, reader: asyncpg.Connection, page: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await rebuild_audit(conn, reader, page)
    finally:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
    stats.print_stats(25)
    return out.getvalue()


def _median(results: list[Figure]) -> Figure:
    return sorted(results, key=lambda r: r[0] / r[1])[(len(results) - 1) // 2]


def report(figures: dict[str, list[Figure]], args: argparse.Namespace) -> None:
    labels = {"raw": "raw: cursor read, jsonb decoded", "audit": "rebuild, audit (periodya replay)",
              "library": "rebuild, library (rebuild_in)"}
    medians = {name: _median(results) for name, results in figures.items()}
    rows = [[labels[name], f"{n:,}", f"{wall:.2f}", c.rate(n / wall), f"{cpu:.2f}", f"{server:.2f}"]
            for name, (n, wall, cpu, server) in medians.items()]
    c.print_table(["figure", "events", "seconds", "events/s", "client CPU s", "server CPU s"], rows,
                  title=f"median of {args.rounds} round(s), page size {args.prefetch}")
    n_raw, t_raw, *_ = medians["raw"]
    n_reb, t_reb, *_ = medians["audit"]
    raw_rate, rebuild_rate = n_raw / t_raw, n_reb / t_reb
    share = rebuild_rate / raw_rate

    rows = [[f"rebuild >= {TARGET_RATE:,} events/s", c.rate(rebuild_rate), c.verdict(rebuild_rate >= TARGET_RATE)],
            [f"rebuild >= {TARGET_SHARE:.0%} of the raw read", c.percent(share), c.verdict(share >= TARGET_SHARE)]]
    c.print_table(["target", "figure", "result"], rows, title="targets (audit rebuild)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to load (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds of each figure (default 3)")
    parser.add_argument("--prefetch", type=int, default=5000,
                        help="page size of every read (default 5000); both rebuilds apply whole pages in "
                             "batches of about APPLY_BATCH events")
    parser.add_argument("--payees", type=int, default=1000, help="distinct payees (default 1000)")
    parser.add_argument("--deals-per-append", type=int, default=100, help="deals per EventStore.append (default 100)")
    parser.add_argument("--workers", type=int, default=3, help="loading connections (default 3)")
    parser.add_argument("--profile", action="store_true", help="also profile one rebuild with cProfile")
    return asyncio.run(run(parser.parse_args(argv)))
