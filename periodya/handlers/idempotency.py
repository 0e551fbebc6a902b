"""Idempotency-Key semantics for platform commands.

Inside the command's own transaction, and before any other lock or write, the key is locked; a
stored answer for the same request is returned as it was, a different request under the same key is
refused (409 IDEMPOTENCY_KEY_REUSED). Only successful answers are stored: a refused command wrote
nothing, so retrying it with the same key decides again. Concurrent requests with one key serialise
on the lock, so exactly one of them runs the command.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg

from periodya.domain.errors import DomainError
from periodya.eventstore.hashing import canonical_json


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


def request_hash(scope: str, body: Any) -> str:
    return hashlib.sha256(f"{scope}\n{canonical_json(body)}".encode()).hexdigest()


def lock_name(scope: str, key: str) -> str:
    return f"idempotency:{scope}:{key}"


async def lookup(conn: asyncpg.Connection, scope: str, key: str, digest: str) -> StoredResponse | None:
    row = await conn.fetchrow(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = $1 AND key = $2", scope, key)
    if row is None:
        return None
    return check((row["request_hash"], row["status"], row["response"]), key, digest)


async def remember(conn: asyncpg.Connection, scope: str, key: str, digest: str, answer: StoredResponse) -> None:
    await remember_many(conn, scope, [(key, digest, answer)])


def check(stored: tuple[str, int, Any], key: str, digest: str) -> StoredResponse:
    """A stored (request_hash, status, response) row as the answer for a request hashing to `digest`."""
    request_hash, status, body = stored
    if request_hash != digest:
        raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used with a different request")
    return StoredResponse(status, body)


async def remember_many(conn: asyncpg.Connection, scope: str,
                        answers: list[tuple[str, str, StoredResponse]]) -> None:
    """`remember` for several (key, digest, answer) at once: one INSERT."""
    if not answers:
        return
    await conn.execute(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status, response) "
        "SELECT $1, k, h, s, r::jsonb FROM unnest($2::text[], $3::text[], $4::int[], $5::text[]) AS u(k, h, s, r)",
        scope, [k for k, _, _ in answers], [d for _, d, _ in answers], [a.status for _, _, a in answers],
        [canonical_json(a.body) for _, _, a in answers])
