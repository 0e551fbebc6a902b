r"""Canonical encoding, advisory-lock keys and the per-stream hash chain.

The chain, per stream:  hash_n = sha256(hash_{n-1} || canonical_n), hash_0 = 32 zero bytes, where
canonical_n is the UTF-8 of these lines joined by "\n":
    stream_id, stream_version (decimal), event_type, recorded_at (integer microseconds since the Unix
    epoch, UTC), jsonb text of data, jsonb text of metadata.
"jsonb text" is PostgreSQL's own output of a jsonb value, reproduced by `jsonb_text`: object keys
ordered by their UTF-8 length, then bytewise; ", " between items and ": " after keys; strings escape
only \", \\, \b, \f, \n, \r, \t and other characters below U+0020 (as \u00xx), the rest is raw
UTF-8; integers in decimal; true, false, null. Floats are refused (money is integer minor units).
Because it is the database's own text form, the database can verify every hash itself
(schema.sql: `chain_breaks`), and `chain_hash` here lets anyone re-check a log or an export without it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON: the wire form sent to the database and hashed for idempotency."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", ord("\b"): "\\b", ord("\f"): "\\f", ord("\n"): "\\n",
            ord("\r"): "\\r", ord("\t"): "\\t"}
_ESCAPES.update({c: f"\\u{c:04x}" for c in range(0x20) if c not in _ESCAPES})


def _string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def _key_order(key: str) -> tuple[int, bytes]:
    raw = key.encode()
    return len(raw), raw


def jsonb_text(value: Any) -> str:
    """PostgreSQL's text output of `value` as jsonb (see the module docstring for the rules)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)}: {jsonb_text(value[k])}" for k in sorted(value, key=_key_order)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not allowed in an event (floats: use integer minor units)")


def epoch_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def chain_hash(prev: bytes, stream_id: str, version: int, event_type: str, recorded_at: datetime,
               data: Any, metadata: Any) -> bytes:
    text = "\n".join((stream_id, str(version), event_type, str(epoch_micros(recorded_at)),
                      jsonb_text(data), jsonb_text(metadata)))
    return hashlib.sha256(prev + text.encode()).digest()


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a resource name ("stream:…", "account:…")."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
