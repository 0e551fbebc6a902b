"""The log digest: one hash over a set of events, in a documented order. Pure (no database).

    digest = sha256( "periodya-digest-v1\\n"
                     || for each event, in commit-safe (tx, seq) order:  "<seq> <tx> <hash hex>\\n" )

`seq` and `tx` in decimal, `hash` the event's stored chain hash (periodya/eventstore/hashing.py) in
lower-case hex; all ASCII. Each event's hash already covers its stream, version, type, time, data and
metadata, so changing, removing, inserting or reordering any event (or renumbering its position)
changes the digest. A daily digest covers every event recorded in one UTC day
(day <= recorded_at < day + 1); it is stored with the count and the first and last seq, and recorded
in the log itself as a LogDigestRecorded event (stream `digest-YYYY-MM-DD`, see audit.daily_digests).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

ALGORITHM = "periodya-digest-v1"
_HEADER = f"{ALGORITHM}\n".encode()


@dataclass(frozen=True)
class DigestRecord:
    """A digest of one UTC day (`day` = "YYYY-MM-DD") or, with `day` None, of a whole export range."""

    day: str | None
    count: int
    first_seq: int | None
    last_seq: int | None
    digest: str
    algorithm: str = ALGORITHM

    def as_json(self) -> dict[str, Any]:
        return {"day": self.day, "count": self.count, "firstSeq": self.first_seq, "lastSeq": self.last_seq,
                "digest": self.digest, "algorithm": self.algorithm}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> DigestRecord:
        return cls(body.get("day"), int(body["count"]), body.get("firstSeq"), body.get("lastSeq"),
                   str(body["digest"]), str(body.get("algorithm", ALGORITHM)))

    def differences(self, other: DigestRecord) -> list[str]:
        """What differs between this (expected) record and `other` (found), in words."""
        out = [f"{name}: expected {mine}, found {theirs}"
               for name, mine, theirs in (("count", self.count, other.count),
                                          ("first seq", self.first_seq, other.first_seq),
                                          ("last seq", self.last_seq, other.last_seq))
               if mine != theirs]
        if self.digest != other.digest:
            out.append(f"digest: expected {self.digest}, found {other.digest}")
        return out


class Digester:
    """Feed events in (tx, seq) order; `record()` gives the digest so far."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256(_HEADER)
        self.count = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None

    def add(self, seq: int, tx: int, event_hash: bytes) -> None:
        self._sha.update(f"{seq} {tx} {event_hash.hex()}\n".encode())
        self.count += 1
        if self.first_seq is None:
            self.first_seq = seq
        self.last_seq = seq

    def record(self, day: str | None) -> DigestRecord:
        return DigestRecord(day, self.count, self.first_seq, self.last_seq, self._sha.hexdigest())
