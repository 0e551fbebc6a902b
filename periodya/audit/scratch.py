"""Scratch schemas: where the audit rebuilds projection tables beside the live ones.

Every schema the audit makes goes through here: `create` (a fresh schema holding schema.sql's
projection DDL, under the same names, indexes and constraints as the live tables), `fresh` (an empty
schema, e.g. the swap's `replay_retired`), `drop`, and `checked`, the one validator of a name that is
spliced into SQL text. A name is a plain lower-case identifier and never one of the schemas that hold
real data.
"""

from __future__ import annotations

import re
import secrets

import asyncpg

from periodya.db import projections_sql

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PROTECTED = frozenset({"periodya", "public", "pg_catalog", "information_schema"})
_SECONDARY = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND NOT i.indisprimary
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"""


def checked(name: str) -> str:
    """`name` itself when it is usable as a scratch schema; ValueError otherwise."""
    if not _NAME.match(name) or name in _PROTECTED or name.startswith("pg_"):
        raise ValueError(f"not a usable scratch schema name: {name!r}")
    return name


def new_name(prefix: str = "replay") -> str:
    """A name no other run uses: `prefix` and 8 random hex digits."""
    return checked(f"{prefix}_{secrets.token_hex(4)}")


async def fresh(conn: asyncpg.Connection, name: str) -> None:
    """An empty schema `name`, replacing whatever was there."""
    name = checked(name)
    await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")


async def drop(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {checked(name)} CASCADE")


async def create(conn: asyncpg.Connection, name: str, *, secondary_indexes: bool = True,
                 unlogged: bool = False) -> list[str]:
    """Inside the caller's transaction: a fresh schema `name` with the projection tables, and
    search_path `name, periodya` for the rest of the transaction (the apply functions name tables
    unqualified). Without `secondary_indexes`, the indexes that are neither primary keys nor
    constraints (the upserts need those) are dropped and their definitions returned, to be created
    again in one bulk build each after the rows are in (`recreate`). `unlogged` makes the still empty
    tables UNLOGGED: only for tables that are rolled back, never for tables to be kept."""
    await fresh(conn, name)
    await conn.execute(f"SET LOCAL search_path = {name}, periodya")
    await conn.execute(projections_sql())
    definitions: list[str] = []
    if not secondary_indexes:
        for row in await conn.fetch(_SECONDARY, name):
            await conn.execute(f"DROP INDEX {row['name']}")
            definitions.append(row["definition"])
    if unlogged:
        for table in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", name):
            await conn.execute(f"ALTER TABLE {name}.{table['tablename']} SET UNLOGGED")
    return definitions


async def recreate(conn: asyncpg.Connection, definitions: list[str]) -> None:
    """Create again the secondary indexes `create` dropped."""
    for definition in definitions:
        await conn.execute(definition)
