"""Canonical encoding, advisory-lock keys and the per-stream hash chain.

The chain, per stream:  hash_n = sha256(hash_{n-1} || canonical_n), hash_0 = 32 zero bytes, where
canonical_n is the UTF-8 of these lines joined by "\\n":
    stream_id, stream_version (decimal), event_type, recorded_at (integer microseconds since the Unix
    epoch, UTC), canonical JSON of data, canonical JSON of metadata.
Canonical JSON: keys sorted, no whitespace, non-ASCII as UTF-8 (orjson with OPT_SORT_KEYS).
The database computes the same bytes in schema.sql's `event_hash`; `chain_hash` here lets anyone
re-check a log (or an export) without the database.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def epoch_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def chain_hash(prev: bytes, stream_id: str, version: int, event_type: str, recorded_at: datetime,
               data: Any, metadata: Any) -> bytes:
    text = "\n".join((stream_id, str(version), event_type, str(epoch_micros(recorded_at)),
                      canonical_json(data), canonical_json(metadata)))
    return hashlib.sha256(prev + text.encode()).digest()


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a resource name ("stream:…", "account:…")."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
