"""`bench commands`: the report, from the figures `bench/commands.py` measured (sections 1-7)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench import _common as c
from bench.commands import AMOUNT, TARGET_P99_MS, TARGET_RPS, Figures, Run


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
         c.verdict(r.per_second >= TARGET_RPS)],
        [f"p99 < {TARGET_P99_MS:g} ms", c.ms(r.p99_ms), c.verdict(r.p99_ms < TARGET_P99_MS)],
        ["no errors (every request 201)", str(figures.spread.error_count), c.verdict(figures.spread.error_count == 0)],
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


def report_profile(stats: dict[str, Any], path: str) -> None:
    requests = stats["client_ops"] or 1
    print(f"\n6. server CPU profile (cProfile, {requests:,} payouts at {stats['client_rps']:,.0f}/s under the profiler;"
          f" {stats['cpu_s'] / stats['wall_s']:.2f} cores)")
    c.print_profile(c.read_profile(path, [("orjson", "orjson")]), requests, "package (own time)")


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

