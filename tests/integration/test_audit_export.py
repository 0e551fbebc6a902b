"""Export + daily digest: the pure checker detects a changed, removed, inserted or reordered event; the
daily digest is recorded once, never overwritten, and `verify` recomputes it."""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from periodya.audit import daily_digests as digests
from periodya.audit.digest_format import DigestRecord
from periodya.audit.export import day_range, event_line, export_rows
from periodya.audit.export_check import check_export
from periodya.cli import build_parser
from periodya.eventstore import EventStore
from periodya.eventstore.hashing import GENESIS, canonical_json, chain_hash
from periodya.eventstore.verify import verify_chains

# The most recent day that is certainly closed: yesterday, except in the grace period after midnight UTC
# (digests.GRACE, plus a margin for a slow run), when yesterday is still open and the day before is used.
CLOSED_DAY = (datetime.now(UTC) - timedelta(days=1) - digests.GRACE - timedelta(minutes=5)).date()


async def insert_day(pool: asyncpg.Pool, day: date, streams: int = 4, per_stream: int = 5,
                     prefix: str = "past") -> None:
    """Events recorded on a past `day` (append_events stamps now(), so they are written as the store would
    have written them then: same columns, same hash chain, one transaction, interleaved streams)."""
    start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=9)
    rows: list[Any] = []
    prev: dict[str, Any] = {}
    for i in range(streams * per_stream):
        sid, version = f"{prefix}-{i % streams}", i // streams + 1
        data = {"n": i, "amount": 100 * (i + 1), "note": "zażółć"}
        meta = {"actor": "test:past", "schemaVersion": 1}
        at = start + timedelta(seconds=i, microseconds=7 * i)
        h = chain_hash(prev.get(sid, GENESIS), sid, version, "PastEvent", at, data, meta)
        rows.append((sid, version, "PastEvent", canonical_json(data), canonical_json(meta), at,
                     prev.get(sid, GENESIS), h))
        prev[sid] = h
    await pool.executemany(
        "INSERT INTO events (stream_id, stream_version, event_type, data, metadata, recorded_at, prev_hash, hash) "
        "VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb, $6, $7, $8)", rows)


async def export_day(pool: asyncpg.Pool, day: date) -> list[bytes]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        return [event_line(r) async for r in export_rows(conn, day_range(day.isoformat()))]


@pytest.fixture
async def day_export(pool: asyncpg.Pool) -> tuple[list[bytes], list[DigestRecord]]:
    await insert_day(pool, CLOSED_DAY)
    await insert_day(pool, CLOSED_DAY - timedelta(days=1), streams=2, prefix="older")
    outcome = await digests.record_daily_digest(EventStore(pool), CLOSED_DAY)
    assert outcome.status == digests.RECORDED and outcome.computed is not None
    lines = await export_day(pool, CLOSED_DAY)
    assert len(lines) == 20 and check_export(lines, [outcome.computed]).ok
    return lines, [outcome.computed]


def _edit(line: bytes, **changes: Any) -> bytes:
    body = orjson.loads(line)
    body.update(changes)
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def _rehash(line: bytes) -> bytes:
    """What a careful forger does: recompute the edited event's own hash."""
    b = orjson.loads(line)
    h = chain_hash(bytes.fromhex(b["prev_hash"]), b["stream_id"], b["stream_version"], b["event_type"],
                   datetime.fromisoformat(b["recorded_at"]), b["data"], b["metadata"])
    return _edit(line, hash=h.hex())


def test_export_lines_carry_every_column(day_export: Any) -> None:
    lines, _ = day_export
    body = orjson.loads(lines[0])
    assert set(body) == {"seq", "tx", "stream_id", "stream_version", "event_type", "data", "metadata",
                         "recorded_at", "prev_hash", "hash"}
    assert body["recorded_at"].endswith("Z") and len(body["recorded_at"]) == len("2026-01-05T09:00:00.000000Z")
    assert len(body["hash"]) == 64 and body["prev_hash"] == "00" * 32


def test_checker_detects_a_changed_event(day_export: Any) -> None:
    lines, digest = day_export
    changed = [*lines]
    changed[5] = _edit(lines[5], data={**orjson.loads(lines[5])["data"], "amount": 1})
    report = check_export(changed, digest)
    assert not report.ok
    assert any("line 6 " in p and "content does not match its hash" in p for p in report.problems)
    # The forger recomputes the hash of the last event of a stream: the chain is intact, the digest is not.
    last = max(range(len(lines)), key=lambda i: (orjson.loads(lines[i])["stream_id"] == "past-0", i))
    forged = [*lines]
    forged[last] = _rehash(_edit(lines[last], data={"n": 0, "amount": 999_999, "note": "x"}))
    report = check_export(forged, digest)
    assert [p for p in report.problems if "digest" in p] and not any("hash (the event" in p for p in report.problems)


def test_checker_detects_a_removed_event(day_export: Any) -> None:
    lines, digest = day_export
    report = check_export(lines[:7] + lines[8:], digest)
    assert not report.ok
    assert any("version gap" in p for p in report.problems)
    assert any("count: expected 20, found 19" in p for p in report.problems)
    # A whole stream removed leaves no gap behind: only the digest sees it.
    stream_3 = [x for x in lines if orjson.loads(x)["stream_id"] != "past-3"]
    report = check_export(stream_3, digest)
    assert [p for p in report.problems if "gap" in p] == []
    assert any("count: expected 20, found 15" in p for p in report.problems)


def test_checker_detects_an_inserted_event(day_export: Any) -> None:
    lines, digest = day_export
    last = orjson.loads(lines[-1])
    forged = _rehash(_edit(lines[-1], stream_id="forged", stream_version=1, prev_hash="00" * 32, seq=last["seq"] + 1))
    report = check_export([*lines, forged], digest)  # a self-consistent event on a new stream
    assert not report.ok
    assert any("count: expected 20, found 21" in p for p in report.problems)
    assert any("last seq" in p for p in report.problems)
    middle = _rehash(_edit(lines[10], stream_id="forged", stream_version=1, prev_hash="00" * 32))
    report = check_export([*lines[:10], middle, *lines[10:]], digest)
    assert any("out of commit order" in p for p in report.problems)
    assert any("digest: expected" in p for p in report.problems)


def test_checker_detects_reordered_events(day_export: Any) -> None:
    lines, digest = day_export
    swapped = [*lines]
    swapped[3], swapped[4] = swapped[4], swapped[3]
    report = check_export(swapped, digest)
    assert any("line 5 " in p and "out of commit order" in p for p in report.problems)
    # Swapped together with their positions, the order looks right and the chains hold: the digest does not.
    a, b = orjson.loads(lines[3]), orjson.loads(lines[4])
    renumbered = [*lines]
    renumbered[3], renumbered[4] = _edit(lines[4], seq=a["seq"]), _edit(lines[3], seq=b["seq"])
    report = check_export(renumbered, digest)
    [problem] = report.problems
    assert problem.startswith(f"day {CLOSED_DAY.isoformat()}: digest: expected")


def test_checker_names_days_without_a_digest(day_export: Any) -> None:
    lines, _digest = day_export
    report = check_export(lines, [])
    assert not report.ok and report.unverified_days == [CLOSED_DAY.isoformat()] and not report.problems


async def test_recording_a_day_is_idempotent_and_never_overwrites(pool: asyncpg.Pool, day_export: Any) -> None:
    store = EventStore(pool)
    count = await pool.fetchval("SELECT count(*) FROM events")
    again = await digests.record_daily_digest(store, CLOSED_DAY)
    assert again.status == digests.ALREADY_RECORDED and await pool.fetchval("SELECT count(*) FROM events") == count
    today = await digests.record_daily_digest(store, datetime.now(UTC).date())
    assert today.status == digests.NOT_CLOSED
    # A careful forger rewrites the last event of a stream and its hash: every chain still verifies.
    row = await pool.fetchrow("SELECT * FROM events WHERE stream_id = 'past-1' AND stream_version = 5")
    data = {**row["data"], "amount": 5}
    forged = chain_hash(bytes(row["prev_hash"]), "past-1", 5, row["event_type"], row["recorded_at"], data,
                        row["metadata"])
    await _tamper(pool, f"UPDATE events SET data = '{canonical_json(data)}', hash = '\\x{forged.hex()}' "
                        "WHERE stream_id = 'past-1' AND stream_version = 5")
    assert (await verify_chains(pool)).ok
    changed = await digests.record_daily_digest(store, CLOSED_DAY)
    assert changed.status == digests.MISMATCH and any(p.startswith("digest:") for p in changed.problems)
    assert await pool.fetchval("SELECT count(*) FROM events") == count  # reported, not overwritten
    [outcome] = [o for o in await digests.verify_digests(pool) if o.day == CLOSED_DAY.isoformat()]
    assert outcome.status == digests.MISMATCH


async def test_verify_recomputes_recorded_digests(pool: asyncpg.Pool, settings: Any, day_export: Any) -> None:
    from periodya.cli import audit as audit_cli

    args = build_parser().parse_args(["verify"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await audit_cli.cmd_verify(args, settings) == 0
    assert "daily digests: 1 recorded, 1 match the log" in out.getvalue()
    # Delete a whole stream: every chain left is intact, so only the digest notices.
    await _tamper(pool, "DELETE FROM events WHERE stream_id = 'past-2'")
    assert (await verify_chains(pool)).ok
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await audit_cli.cmd_verify(args, settings) == 1
    assert f"DIGEST MISMATCH day {CLOSED_DAY.isoformat()}: count: expected 20, found 15" in out.getvalue()


async def _tamper(pool: asyncpg.Pool, sql: str) -> None:
    async with pool.acquire() as c, c.transaction():
        await c.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await c.execute(sql)
        await c.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
