"""The sentinel job: `recent` (hourly) checks what was written since its last checkpoint, `full` (daily)
checks everything. Findings raise alerts (once per (code, subject) while open); an open alert
auto-resolves when this run checked its own condition and found it gone (check_result.Result.cleared),
except LEDGER_UNBALANCED and HASH_CHAIN_BROKEN, which wait for a human. At most
MAX_NEW_PER_CODE alerts are raised per code per run; the rest are summed up in one ALERTS_CAPPED alert.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from periodya.deps import Deps
from periodya.domain.alerts import CRITICAL, NEVER_AUTO_RESOLVED, WARNING
from periodya.eventstore import START, Position
from periodya.handlers import alerts
from periodya.handlers.unit_of_work import Meta, run_command
from periodya.logging import get_logger
from periodya.runners.base import Summary
from periodya.runners.check_result import Result, Scope
from periodya.runners.sentinel_checks import CHECKS, remedy

MAX_NEW_PER_CODE = 50
MAX_DIGEST_DAYS = 31  # daily digests recorded per full run, oldest first
CHECKPOINT = "sentinel"
META = Meta(actor="runner:sentinel")
log = get_logger("periodya.sentinel")


async def run_scope(deps: Deps, full: bool) -> tuple[Scope, Position]:
    """What this run examines, and the position its checkpoint moves to: the newest event below the
    snapshot horizon. Recent mode lists the streams written since the checkpoint; full mode checks
    everything and needs no list (listing a whole log costs seconds)."""
    pool = deps.store.pool
    if full:
        row = await pool.fetchrow(
            "SELECT tx::text::bigint AS tx, seq FROM events WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) "
            "ORDER BY tx DESC, seq DESC LIMIT 1")
        return Scope(True), Position(row["tx"], row["seq"]) if row else START
    row = await pool.fetchrow("SELECT tx::text::bigint AS tx, seq FROM checkpoints WHERE name = $1", CHECKPOINT)
    after = Position(row["tx"], row["seq"]) if row else START
    rows = await pool.fetch(
        "SELECT DISTINCT ON (stream_id) stream_id, tx::text::bigint AS tx, seq FROM events "
        "WHERE (tx, seq) > ($1::text::xid8, $2) AND tx < pg_snapshot_xmin(pg_current_snapshot())",
        str(after.tx), after.seq)
    last = max((Position(r["tx"], r["seq"]) for r in rows), default=after)
    return Scope(False, [r["stream_id"] for r in rows]), last


async def _raise(code: str, severity: str, subject: str, details: dict[str, Any], deps: Deps) -> bool:
    return await run_command(deps.store, META, lambda u: alerts.raise_alert(
        u, code, severity, subject, details, remedy(code, details)))


async def _apply(deps: Deps, result: Result, summary: Summary) -> None:
    new = 0
    capped = False
    for subject, details in sorted(result.findings.items()):
        if new >= MAX_NEW_PER_CODE:
            await _raise("ALERTS_CAPPED", WARNING, result.code,
                         {"code": result.code, "count": len(result.findings), "raisedThisRun": new}, deps)
            capped = True
            break
        if await _raise(result.code, result.severity, subject, details, deps):
            new += 1
            summary.count(f"raised:{result.code}")
    if (result.complete or result.checked) and result.code not in NEVER_AUTO_RESOLVED:
        open_rows = await deps.store.pool.fetch(
            "SELECT subject FROM alerts WHERE code = $1 AND status <> 'RESOLVED'", result.code)
        for r in open_rows:
            if result.cleared(r["subject"]):  # its own condition was checked in this run and is gone
                await run_command(deps.store, META, partial(alerts.auto_resolve, code=result.code,
                                                            subject=r["subject"]))
                summary.count(f"resolved:{result.code}")
    if result.complete and not capped:  # ALERTS_CAPPED's condition for this code was checked and is gone
        await _resolve_open(deps, "ALERTS_CAPPED", result.code, summary)


async def _resolve_open(deps: Deps, code: str, subject: str, summary: Summary) -> None:
    if await deps.store.pool.fetchval(
            "SELECT 1 FROM alerts WHERE code = $1 AND subject = $2 AND status <> 'RESOLVED'", code, subject):
        await run_command(deps.store, META, partial(alerts.auto_resolve, code=code, subject=subject))
        summary.count(f"resolved:{code}")


async def run(deps: Deps, batch: int = 0, *, mode: str = "recent") -> Summary:
    summary = Summary(f"sentinel:{mode}")
    scope, last = await run_scope(deps, full=(mode == "full"))
    all_ran = True
    for check in CHECKS:
        name = check.__name__
        summary.processed += 1
        try:
            # One snapshot per check: a check compares two reads (the log or the entries, then the balances),
            # and a commit between them would look like drift. Read-only, so a check can never write.
            async with deps.store.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                           readonly=True):
                result = await check(deps, conn, scope)
        except Exception as exc:  # a check that cannot run is itself an alert, never a silent "all clear"
            log.exception("sentinel_check_failed", check=name)
            await _raise("SENTINEL_CHECK_FAILED", CRITICAL, name, {"check": name, "error": str(exc)[:500]}, deps)
            summary.failed += 1
            all_ran = False
            continue
        summary.succeeded += 1
        summary.count(f"examined:{result.code}") if result.examined else summary.count(f"empty:{result.code}")
        await _apply(deps, result, summary)
        await _clear_check_failure(deps, name, summary)
    if mode == "full":
        await _record_digest(deps, summary)
    if all_ran:
        await deps.store.pool.execute(
            "INSERT INTO checkpoints (name, tx, seq, updated_at) VALUES ($1, $2::text::xid8, $3, now()) "
            "ON CONFLICT (name) DO UPDATE SET tx = EXCLUDED.tx, seq = EXCLUDED.seq, updated_at = now()",
            CHECKPOINT, str(last.tx), last.seq)
    return summary


async def _days_to_digest(deps: Deps, limit: int) -> list[date]:
    """The days whose digest the full run records or re-checks, oldest first: every day from the log's
    first one up to yesterday that has no recorded digest yet (at most `limit` of them; the next run
    goes on from there), then yesterday again when it is recorded (a re-check that catches a change)."""
    from periodya.audit.daily_digests import stream

    yesterday = (deps.clock() - timedelta(days=1)).date()
    first_at: datetime | None = await deps.store.pool.fetchval("SELECT min(recorded_at) FROM events")
    if first_at is None:
        return []
    first = first_at.astimezone(UTC).date()
    days = [first + timedelta(days=n) for n in range((yesterday - first).days + 1)]  # none if first > yesterday
    recorded = {r["stream_id"] for r in await deps.store.pool.fetch(
        "SELECT stream_id FROM events WHERE stream_id = ANY($1::text[]) AND stream_version = 1",
        [stream(d) for d in days])}
    todo = [d for d in days if stream(d) not in recorded][:limit]
    return [*todo, yesterday] if stream(yesterday) in recorded else todo


async def _record_digest(deps: Deps, summary: Summary) -> None:
    """The daily run records the digest of every closed day not recorded yet, oldest first, at most
    MAX_DIGEST_DAYS per run (a first run on an old log catches up over several runs), and re-checks
    yesterday's. Idempotent, also with two sentinels at once: each day's digest is appended to its own
    stream with expected version NO_STREAM, so one run records it and the other compares with it
    (audit.daily_digests.record_daily_digest). A digest that no longer matches the recorded one means the log
    was changed: a critical alert for a human. The first day not closed yet ends the run's digests."""
    from periodya.audit.daily_digests import MISMATCH, NOT_CLOSED, record_daily_digest

    days = await _days_to_digest(deps, MAX_DIGEST_DAYS)
    for day in days:
        try:
            outcome = await record_daily_digest(deps.store, day, now=deps.clock())
        except Exception as exc:  # like a check that could not run: alert, never a silent pass
            log.exception("digest_failed", day=day.isoformat())
            await _raise("SENTINEL_CHECK_FAILED", CRITICAL, "daily_digest", {"check": "daily_digest",
                                                                             "error": str(exc)[:500]}, deps)
            summary.failed += 1
            return
        summary.count(f"digest:{outcome.status}")
        if outcome.status == MISMATCH:
            await _raise("DIGEST_MISMATCH", CRITICAL, outcome.day, {"day": outcome.day}, deps)
        if outcome.status == NOT_CLOSED:
            return  # nor is any later day


async def _clear_check_failure(deps: Deps, name: str, summary: Summary) -> None:
    if await deps.store.pool.fetchval("SELECT 1 FROM alerts WHERE code = 'SENTINEL_CHECK_FAILED' "
                                      "AND subject = $1 AND status <> 'RESOLVED'", name):
        await run_command(deps.store, META, lambda u: alerts.auto_resolve(u, "SENTINEL_CHECK_FAILED", name))
        summary.count("resolved:SENTINEL_CHECK_FAILED")
