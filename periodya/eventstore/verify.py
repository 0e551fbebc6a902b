"""Re-check every stream's hash chain from the stored rows; name the first broken link."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from periodya.eventstore.hashing import GENESIS, chain_hash


@dataclass(frozen=True)
class BrokenLink:
    stream_id: str
    stream_version: int
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"stream {self.stream_id} version {self.stream_version} (seq {self.seq}): {self.reason}"


@dataclass(frozen=True)
class ChainReport:
    streams: int
    events: int
    broken: list[BrokenLink]

    @property
    def ok(self) -> bool:
        return not self.broken


async def verify_chains(pool: asyncpg.Pool, *, max_broken: int = 100, streams: list[str] | None = None) -> ChainReport:
    """Walk every stream (or just `streams`) in version order, recomputing each hash from the row.

    Detects a changed row (hash mismatch), a removed or inserted row (version gap, prev_hash not
    the predecessor's hash). Reads with a server-side cursor, so memory stays flat on large logs.
    """
    broken: list[BrokenLink] = []
    n_streams = n_events = 0
    sql = ("SELECT seq, stream_id, stream_version, event_type, data, metadata, recorded_at, prev_hash, hash "
           "FROM events {where} ORDER BY stream_id, stream_version")
    where, args = ("WHERE stream_id = ANY($1::text[])", [streams]) if streams is not None else ("", [])
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        current: str | None = None
        prev = GENESIS
        expect_version = 1
        stream_broken = False
        async for row in conn.cursor(sql.format(where=where), *args, prefetch=2000):
            n_events += 1
            if row["stream_id"] != current:
                current, prev, expect_version, stream_broken = row["stream_id"], GENESIS, 1, False
                n_streams += 1
            if stream_broken:
                continue
            reason = None
            if row["stream_version"] != expect_version:
                reason = f"version gap: expected {expect_version}, found {row['stream_version']}"
            elif bytes(row["prev_hash"]) != prev:
                reason = "prev_hash does not match the previous event's hash"
            else:
                computed = chain_hash(prev, row["stream_id"], row["stream_version"], row["event_type"],
                                      row["recorded_at"], row["data"], row["metadata"])
                if computed != bytes(row["hash"]):
                    reason = "content does not match its hash (event changed after it was written)"
            if reason is not None:
                broken.append(BrokenLink(row["stream_id"], row["stream_version"], row["seq"], reason))
                stream_broken = True  # report the first broken link of each stream only
                if len(broken) >= max_broken:
                    break
                continue
            prev = bytes(row["hash"])
            expect_version += 1
    return ChainReport(n_streams, n_events, broken)


async def chain_breaks_in_db(pool: asyncpg.Pool, streams: list[str] | None = None,
                             max_broken: int = 100) -> ChainReport:
    """The same check run by the database itself (schema.sql `chain_breaks`): fast enough for the
    sentinel's daily full run. It trusts the database's own functions, so audits use `verify_chains`."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM chain_breaks($1::text[]) LIMIT $2", streams, max_broken)
        counts = await conn.fetchrow(
            "SELECT count(DISTINCT stream_id) AS streams, count(*) AS events FROM events "
            "WHERE $1::text[] IS NULL OR stream_id = ANY ($1::text[])", streams)
    broken = [BrokenLink(r["stream_id"], r["stream_version"], r["seq"], r["reason"]) for r in rows]
    return ChainReport(counts["streams"], counts["events"], broken)
