"""Daily digests of the whole log, recorded in the log itself, and their re-verification.

`record_daily_digest(store, day)` computes the digest (audit.digest_format) of every event recorded in that
UTC day and appends it as LogDigestRecorded to stream `digest-YYYY-MM-DD` with expected version
NO_STREAM. Idempotent: recording a day again is a no-op when the digest is the same; when it differs
(the day's events changed since) nothing is overwritten and the mismatch is returned for the caller (the
sentinel) to raise. A day is digested only once it is closed: its end plus a grace period has passed and
no transaction that began before its end is still open (such a transaction could still commit events
stamped with that day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from periodya.audit.digest_format import Digester, DigestRecord
from periodya.domain.events import Event
from periodya.errors import ConcurrencyConflict
from periodya.event_registry import REGISTRY
from periodya.eventstore import NO_STREAM, EventStore, StreamAppend
from periodya.handlers.unit_of_work import Meta

GRACE = timedelta(minutes=10)
STREAM_PREFIX = "digest-"
RECORDED, ALREADY_RECORDED, MISMATCH, NOT_CLOSED = "recorded", "already_recorded", "mismatch", "not_closed"
_DAY_EVENTS = ("SELECT seq, tx::text::bigint AS tx, hash FROM periodya.events "
               "WHERE recorded_at >= $1 AND recorded_at < $2 ORDER BY tx, seq")


@REGISTRY.register
class LogDigestRecorded(Event):
    """The digest of every event recorded in one UTC day (audit.digest_format documents the bytes)."""

    event_type = "LogDigestRecorded"
    day: str
    count: int
    first_seq: int | None
    last_seq: int | None
    digest: str
    algorithm: str


@dataclass(frozen=True)
class DigestOutcome:
    day: str
    status: str  # RECORDED | ALREADY_RECORDED | MISMATCH | NOT_CLOSED
    computed: DigestRecord | None
    recorded: DigestRecord | None = None

    @property
    def problems(self) -> list[str]:
        if self.status != MISMATCH or self.recorded is None or self.computed is None:
            return []
        return self.recorded.differences(self.computed)


def stream(day: date) -> str:
    return f"{STREAM_PREFIX}{day.isoformat()}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), UTC)
    return start, start + timedelta(days=1)


def _as_date(day: date | str) -> date:
    return date.fromisoformat(day) if isinstance(day, str) else day


async def compute_day(conn: asyncpg.Connection, day: date) -> DigestRecord:
    """The digest of `day` as the log holds it now. Run inside a REPEATABLE READ transaction."""
    start, end = day_bounds(day)
    digester = Digester()
    async for row in conn.cursor(_DAY_EVENTS, start, end, prefetch=5000):
        digester.add(row["seq"], row["tx"], bytes(row["hash"]))
    return digester.record(day.isoformat())


def _from_event(data: dict[str, object]) -> DigestRecord:
    return DigestRecord.from_json(data)


async def recorded_digest(conn: asyncpg.Connection | asyncpg.Pool, day: date) -> DigestRecord | None:
    data = await conn.fetchval("SELECT data FROM periodya.events WHERE stream_id = $1 AND stream_version = 1",
                               stream(day))
    return None if data is None else _from_event(data)


async def day_is_closed(conn: asyncpg.Connection, day: date, now: datetime, grace: timedelta) -> bool:
    _, end = day_bounds(day)
    if now < end + grace:
        return False
    # Sessions of other roles show no xact_start without pg_read_all_stats: the grace period covers those.
    still_open = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND xact_start < $1", end)
    return not still_open


async def record_daily_digest(store: EventStore, day: date | str, *, now: datetime | None = None,
                              grace: timedelta = GRACE, meta: Meta | None = None) -> DigestOutcome:
    """Record the digest of `day` once (see the module docstring for the idempotency rules)."""
    day = _as_date(day)
    meta = meta or Meta(actor="runner:sentinel")
    async with store.pool.acquire() as conn:
        if not await day_is_closed(conn, day, now or datetime.now(UTC), grace):
            return DigestOutcome(day.isoformat(), NOT_CLOSED, None)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute("SET LOCAL statement_timeout = 0")
            computed = await compute_day(conn, day)
        for _ in range(2):
            existing = await recorded_digest(conn, day)
            if existing is not None:
                status = ALREADY_RECORDED if not existing.differences(computed) else MISMATCH
                return DigestOutcome(day.isoformat(), status, computed, existing)
            event = REGISTRY.to_new(LogDigestRecorded(
                day=computed.day or day.isoformat(), count=computed.count, first_seq=computed.first_seq,
                last_seq=computed.last_seq, digest=computed.digest, algorithm=computed.algorithm),
                meta.as_metadata())
            try:
                await store.append([StreamAppend(stream(day), NO_STREAM, [event])], conn=conn)
            except ConcurrencyConflict:
                continue  # another run recorded it first: compare with theirs
            store.wake()
            return DigestOutcome(day.isoformat(), RECORDED, computed, computed)
    raise AssertionError("unreachable: the digest stream exists after a conflict")


async def recorded_days(pool: asyncpg.Pool, first: date | None = None, last: date | None = None) -> list[DigestRecord]:
    """Every recorded daily digest (optionally from `first` to `last`, inclusive), by day."""
    rows = await pool.fetch(
        "SELECT data FROM periodya.events WHERE event_type = 'LogDigestRecorded' AND stream_version = 1 "
        "AND ($1::text IS NULL OR data->>'day' >= $1) AND ($2::text IS NULL OR data->>'day' <= $2) "
        "ORDER BY data->>'day'", first.isoformat() if first else None, last.isoformat() if last else None)
    return [_from_event(r["data"]) for r in rows]


async def verify_digests(pool: asyncpg.Pool) -> list[DigestOutcome]:
    """Recompute every recorded daily digest from the log as it is now; one outcome per day
    (ALREADY_RECORDED when it still matches, MISMATCH otherwise), all in one snapshot."""
    out = []
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL statement_timeout = 0")
        rows = await conn.fetch("SELECT data FROM periodya.events WHERE event_type = 'LogDigestRecorded' "
                                "ORDER BY data->>'day', seq")
        for row in rows:
            recorded = _from_event(row["data"])
            computed = await compute_day(conn, date.fromisoformat(recorded.day or ""))
            status = ALREADY_RECORDED if not recorded.differences(computed) else MISMATCH
            out.append(DigestOutcome(computed.day or "", status, computed, recorded))
    return out
