"""`periodya export`: events as JSON Lines, with every column needed to re-check the hash chain.

One object per line, in commit-safe (tx, seq) order, keys sorted:
    seq, tx, stream_id, stream_version, event_type, data, metadata,
    recorded_at (RFC 3339 UTC with microseconds, e.g. 2026-01-05T10:00:00.123456Z),
    prev_hash, hash (lower-case hex of the 32-byte chain hashes).

Range bounds: a position P bounds by commit order ((tx, seq) at least / at most event P's, inclusive);
a moment T bounds by recording time (`--from T`: recorded_at >= T, `--to T`: recorded_at < T, so the
export of [midnight, next midnight) is exactly one day's digest set). The range is read inside one
REPEATABLE READ snapshot, where every visible event is committed. A range that reaches above the
snapshot horizon may still gain events from transactions in flight (the CLI says so); a closed day
(one with a recorded digest) cannot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from periodya.audit.points import Point, position_of
from periodya.eventstore.timeline import rfc3339

_COLUMNS = ("seq, tx::text::bigint AS tx, stream_id, stream_version, event_type, data, metadata, recorded_at, "
            "prev_hash, hash")


@dataclass(frozen=True)
class Range:
    start: Point | None = None
    end: Point | None = None


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"seq": row["seq"], "tx": row["tx"], "stream_id": row["stream_id"],
            "stream_version": row["stream_version"], "event_type": row["event_type"], "data": row["data"],
            "metadata": row["metadata"], "recorded_at": rfc3339(row["recorded_at"]),
            "prev_hash": bytes(row["prev_hash"]).hex(), "hash": bytes(row["hash"]).hex()}


def event_line(row: asyncpg.Record) -> bytes:
    return orjson.dumps(event_json(row), option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


async def _where(conn: asyncpg.Connection, rng: Range) -> tuple[str, list[Any]]:
    clauses = ["true"]
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    for point, op, time_op in ((rng.start, ">=", ">="), (rng.end, "<=", "<")):
        if point is None:
            continue
        if point.seq is not None:
            pos = await position_of(conn, point.seq)
            clauses.append(f"(tx, seq) {op} ({arg(str(pos.tx))}::text::xid8, {arg(pos.seq)}::bigint)")
        else:
            clauses.append(f"recorded_at {time_op} {arg(point.at)}")
    return " AND ".join(clauses), args


async def export_rows(conn: asyncpg.Connection, rng: Range, prefetch: int = 2000) -> AsyncIterator[asyncpg.Record]:
    """The range's rows in (tx, seq) order. Run inside a (read-only REPEATABLE READ) transaction."""
    where, args = await _where(conn, rng)
    async for row in conn.cursor(f"SELECT {_COLUMNS} FROM periodya.events WHERE {where} ORDER BY tx, seq", *args,
                                 prefetch=prefetch):
        yield row


def day_range(day: str) -> Range:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return Range(Point(at=start), Point(at=start + timedelta(days=1)))
