"""Database wiring: the embedded server, the asyncpg pool, and `migrate`.

The pool sets `idle_in_transaction_session_timeout` and `statement_timeout` on every connection: an
idle open transaction holds back the snapshot horizon that commit-order-safe readers wait on, so it
must never live long.
"""

from __future__ import annotations

import hashlib
import socket
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from periodya.errors import ConfigError

SCHEMA = "periodya"
PROJECTIONS_MARKER = "-- @projections"
_SERVER_SETTINGS = {
    "idle_in_transaction_session_timeout": "30000",  # ms
    "statement_timeout": "30000",  # ms
    "search_path": SCHEMA,
    "application_name": "periodya",
}


def schema_sql() -> str:
    """The schema as shipped in the wheel, or from the repository root when run from source."""
    shipped = resources.files("periodya").joinpath("schema.sql")
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


def projections_sql() -> str:
    """The projection tables' DDL alone (unqualified names), used to build a replay scratch schema."""
    text = schema_sql()
    return text[text.index(PROJECTIONS_MARKER) :]


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in `data_dir`/pgdata and return its URL.

    Several `periodya` processes share one server; it is stopped when the last live one exits
    (`periodya/embedded.py`: stale handles of killed processes are pruned, never trusted)."""
    from periodya import embedded

    return embedded.start(data_dir)


def resolve_database_url(database_url: str | None, data_dir: Path) -> str:
    return database_url if database_url else start_embedded(data_dir)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads, format="text",
        )


async def _reset(_conn: asyncpg.Connection) -> None:
    """Release-time reset. asyncpg still rolls back any open transaction and drops listener callbacks;
    its default reset query (unlock all advisory locks, CLOSE ALL, UNLISTEN *, RESET ALL) costs a round
    trip per release and undoes nothing this code leaves behind: it takes only transaction-scoped
    advisory locks, opens cursors only inside transactions, sets only SET LOCAL, and LISTENs nowhere."""


async def connect_pool(url: str, *, min_size: int = 2, max_size: int = 10, **kwargs: Any) -> asyncpg.Pool:
    """Open a pool, turning every way it can fail into a one-line ConfigError."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, server_settings=_SERVER_SETTINGS,
            init=_init_connection, reset=_reset, timeout=10, **kwargs,
        )
    except (TimeoutError, OSError, socket.gaierror) as exc:
        raise ConfigError(f"database unreachable: {exc or type(exc).__name__}") from None
    except asyncpg.InvalidCatalogNameError as exc:
        raise ConfigError(f"database does not exist: {exc}") from None
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise ConfigError(f"database refused the login: {exc}") from None
    except asyncpg.PostgresError as exc:
        raise ConfigError(f"database error: {exc}") from None
    except ValueError as exc:  # asyncpg's DSN parser
        raise ConfigError(f"DATABASE_URL is malformed: {exc}") from None
    assert pool is not None
    return pool


async def migrate(conn: asyncpg.Connection) -> None:
    """Apply schema.sql. Idempotent; serialised by an advisory lock so two migrators cannot race.

    Also upgrades a database made by an earlier schema.sql: what CREATE ... IF NOT EXISTS leaves alone
    (a CHECK on an existing table) goes through schema.sql's add_check. One transaction: a failure (a
    row the new CHECK refuses) leaves the database as it was and records no digest."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(7305861150284930)")
        await conn.execute(schema_sql())
        await conn.execute("INSERT INTO periodya.schema_migrations (digest) VALUES ($1) ON CONFLICT DO NOTHING",
                           schema_digest())


def schema_digest() -> str:
    """The version of the schema this code expects: sha256 of its schema.sql (GET /readyz checks it)."""
    return hashlib.sha256(schema_sql().encode()).hexdigest()


async def ensure_schema(conn: asyncpg.Connection) -> None:
    """Fail with a clear message when the schema has not been applied."""
    found = await conn.fetchval("SELECT to_regclass('periodya.events') IS NOT NULL")
    if not found:
        raise ConfigError("the database has no periodya schema: run `periodya migrate` first")

