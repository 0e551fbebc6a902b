"""Check an export (JSON Lines, audit.export) against digests: pure Python, no database.

What it checks, in one pass over the lines:
1. every line is an event with all the export's fields;
2. each event's `hash` is sha256(prev_hash || canonical bytes) of its own content (hashing.chain_hash):
   an event changed without recomputing its hash is named here;
3. lines are in strictly ascending commit-safe (tx, seq) order: a moved line is named here;
4. along each stream, within the export, versions are consecutive and each prev_hash is the previous
   event's hash: an event removed from or inserted into the middle of a stream is named here;
5. per digest: the events it covers (the lines recorded in its UTC day, or all lines for a range
   digest), in file order, give exactly its count, first and last seq and digest (audit.digest_format).
   This catches what 2-4 cannot: a whole stream removed, an event appended at a stream's end, an edit
   whose hashes were all recomputed, two lines swapped together with their positions.
Lines on a day no digest covers are reported as unverified; `ok` requires none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from periodya.audit.digest_format import Digester, DigestRecord
from periodya.eventstore.hashing import chain_hash

FIELDS = ("seq", "tx", "stream_id", "stream_version", "event_type", "data", "metadata", "recorded_at",
          "prev_hash", "hash")


@dataclass
class ExportReport:
    events: int = 0
    problems: list[str] = field(default_factory=list)
    unverified_days: list[str] = field(default_factory=list)
    digests_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unverified_days


@dataclass(frozen=True)
class _Event:
    line: int
    seq: int
    tx: int
    stream_id: str
    version: int
    recorded_at: datetime
    prev_hash: bytes
    hash: bytes
    body: dict[str, Any]

    @property
    def day(self) -> str:
        return self.recorded_at.astimezone(UTC).date().isoformat()

    def __str__(self) -> str:
        return f"line {self.line} (seq {self.seq}, stream {self.stream_id} v{self.version})"


def _parse(number: int, text: str | bytes) -> _Event:
    body = orjson.loads(text)
    missing = [f for f in FIELDS if f not in body]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    recorded_at = datetime.fromisoformat(body["recorded_at"])
    if recorded_at.tzinfo is None:
        raise ValueError("recorded_at has no offset")
    return _Event(number, int(body["seq"]), int(body["tx"]), str(body["stream_id"]), int(body["stream_version"]),
                  recorded_at, bytes.fromhex(body["prev_hash"]), bytes.fromhex(body["hash"]), body)


def _check_event(ev: _Event, previous: _Event | None, streams: dict[str, _Event]) -> list[str]:
    out = []
    b = ev.body
    if chain_hash(ev.prev_hash, ev.stream_id, ev.version, b["event_type"], ev.recorded_at, b["data"],
                  b["metadata"]) != ev.hash:
        out.append(f"{ev}: content does not match its hash (the event was changed)")
    if previous is not None and (ev.tx, ev.seq) <= (previous.tx, previous.seq):
        out.append(f"{ev}: out of commit order after seq {previous.seq} (events reordered)")
    before = streams.get(ev.stream_id)
    if before is not None:
        if ev.version != before.version + 1:
            out.append(f"{ev}: stream version gap after v{before.version} (an event removed or inserted)")
        elif ev.prev_hash != before.hash:
            out.append(f"{ev}: prev_hash is not the hash of v{before.version} (an event removed or inserted)")
    return out


def check_export(lines: Iterable[str | bytes], digests: Sequence[DigestRecord]) -> ExportReport:
    """Check export `lines` against `digests` (daily ones, or one range digest with day None)."""
    report = ExportReport()
    by_day = {d.day: d for d in digests if d.day is not None}
    whole = [d for d in digests if d.day is None]
    digesters: dict[str | None, Digester] = {day: Digester() for day in by_day}
    if whole:
        digesters[None] = Digester()
    unverified: set[str] = set()
    previous: _Event | None = None
    streams: dict[str, _Event] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            ev = _parse(number, text)
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            report.problems.append(f"line {number}: not an exported event ({exc})")
            continue
        report.events += 1
        report.problems += _check_event(ev, previous, streams)
        previous, streams[ev.stream_id] = ev, ev
        for key in (ev.day, None):
            if key in digesters:
                digesters[key].add(ev.seq, ev.tx, ev.hash)
        if ev.day not in by_day and not whole:
            unverified.add(ev.day)
    for expected in [*by_day.values(), *whole]:
        found = digesters[expected.day].record(expected.day)
        report.digests_checked += 1
        label = f"day {expected.day}" if expected.day else "range"
        report.problems += [f"{label}: {d} (an event changed, removed, inserted or reordered)"
                            for d in expected.differences(found)]
    report.unverified_days = sorted(unverified)
    return report


def read_digests(lines: Iterable[str | bytes]) -> list[DigestRecord]:
    """Digest records from a file: JSON Lines (or one JSON array) of DigestRecord.as_json() objects."""
    text = b"".join(x if isinstance(x, bytes) else x.encode() for x in lines).strip()
    if text.startswith(b"["):
        return [DigestRecord.from_json(d) for d in orjson.loads(text)]
    return [DigestRecord.from_json(orjson.loads(line)) for line in text.splitlines() if line.strip()]
