"""Points in the log given on the command line: a position (global seq) or an RFC 3339 moment.

A position N means "the log up to and including event N in commit-safe (tx, seq) order": every event
whose (tx, seq) is at most event N's. A moment T, where a prefix of the log is needed (replay --until,
balances --as-of), means the longest (tx, seq) prefix whose events were all recorded at or before T:
the cut stops just before the first event, in (tx, seq) order, recorded after T. Every event in it was
recorded by T, and it is a prefix, so replaying it applies each stream in version order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from periodya.errors import PeriodyaError
from periodya.eventstore.model import START, Position
from periodya.eventstore.timeline import rfc3339

_DIGITS = re.compile(r"^\d+$")
_LAST_BEFORE = ("SELECT tx::text::bigint AS tx, seq FROM periodya.events "
                "WHERE (tx, seq) < ($1::text::xid8, $2::bigint) ORDER BY tx DESC, seq DESC LIMIT 1")


class AuditError(PeriodyaError):
    """An audit request that cannot be answered as asked (no such position, a malformed moment)."""

    code = "AUDIT_ERROR"


@dataclass(frozen=True)
class Point:
    """What the user typed: exactly one of `seq` and `at` is set."""

    seq: int | None = None
    at: datetime | None = None

    def __str__(self) -> str:
        return f"position {self.seq}" if self.seq is not None else rfc3339(self.at)


def parse_moment(text: str) -> datetime:
    """An RFC 3339 timestamp with an offset (or a bare date, meaning its UTC midnight)."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise AuditError(f"{text!r} is neither a position (an integer) nor an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise AuditError(f"timestamp {text!r} has no UTC offset (write e.g. {text}Z)")
    return moment.astimezone(UTC)


def parse_point(text: str) -> Point:
    if _DIGITS.match(text.strip()):
        return Point(seq=int(text))
    return Point(at=parse_moment(text))


async def position_of(conn: asyncpg.Connection, seq: int) -> Position:
    """The (tx, seq) of event `seq`; position 0 is the empty log."""
    if seq == 0:
        return START
    tx = await conn.fetchval("SELECT tx::text::bigint FROM periodya.events WHERE seq = $1", seq)
    if tx is None:
        raise AuditError(f"there is no event at position {seq}")
    return Position(int(tx), seq)


async def cut_at(conn: asyncpg.Connection, moment: datetime) -> Position:
    """The last event of the longest (tx, seq) prefix recorded at or before `moment` (START if none)."""
    first_after = await conn.fetchrow(
        "SELECT tx::text::bigint AS tx, seq FROM periodya.events WHERE recorded_at > $1 ORDER BY tx, seq LIMIT 1",
        moment)
    if first_after is None:
        row = await conn.fetchrow(
            "SELECT tx::text::bigint AS tx, seq FROM periodya.events ORDER BY tx DESC, seq DESC LIMIT 1")
    else:
        row = await conn.fetchrow(_LAST_BEFORE, str(first_after["tx"]), first_after["seq"])
    return START if row is None else Position(row["tx"], row["seq"])


async def resolve(conn: asyncpg.Connection, point: Point) -> Position:
    """The end of the prefix `point` names (see the module docstring)."""
    if point.seq is not None:
        return await position_of(conn, point.seq)
    assert point.at is not None
    return await cut_at(conn, point.at)


async def above_horizon(conn: asyncpg.Connection, position: Position) -> bool:
    """True when a transaction still in flight may yet commit events inside the prefix ending at `position`
    (its tx is not below the snapshot horizon): an answer about it could still change."""
    if position == START:
        return False
    return bool(await conn.fetchval("SELECT $1::text::xid8 >= pg_snapshot_xmin(pg_current_snapshot())",
                                    str(position.tx)))
