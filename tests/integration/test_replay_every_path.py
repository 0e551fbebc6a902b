"""Every way the log is rebuilt (the one engine, audit.engine: with and without a reader, the swap's
catch-up, and `periodya replay` with --projection, --until and --swap), over a log with every event
type, on both sides of every batch-size threshold the projections have and with pages from one event
to the whole log, through every connection (wrapper) the apply functions are handed: the result equals
the live tables.

Issue 11 (1): `periodya replay` failed on any log with an applied provider event because the audit's
rebuild hands the apply functions a SharedConnection, and no test ran that wrapper over such a log: the
replay tests used programs without webhooks, and the webhook replay test used the other rebuild. This
module crosses them all: rebuild paths x thresholds x page sizes x one realistic log.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from types import ModuleType

import asyncpg
import pytest

import periodya.projections as projections_pkg
from periodya.audit import replay as rb
from periodya.audit.diff import diff_table
from periodya.audit.engine import catch_up, rebuild_into
from periodya.audit.replay import replay_and_diff
from periodya.cli.replay import run_replay
from periodya.config import Settings
from periodya.eventstore import START
from periodya.projections import PROJECTIONS, rows
from tests.integration.full_log import build_full_log
from tests.integration.pipeline import live_pipeline

SMALL, LARGE = 1, 10**9


def thresholds() -> Iterator[tuple[ModuleType, str]]:
    """Every batch-size threshold of the projections: module-level ints named *_FROM (rows.COPY_FROM...)."""
    modules: list[ModuleType] = [rows, *PROJECTIONS.values()]  # type: ignore[list-item]
    for module in modules:
        for name, value in vars(module).items():
            if name.endswith("_FROM") and isinstance(value, int):
                yield module, name


def set_thresholds(monkeypatch: pytest.MonkeyPatch, value: int) -> None:
    for module, name in thresholds():
        monkeypatch.setattr(module, name, value)


@pytest.fixture
async def full_log(pool: asyncpg.Pool, settings: Settings) -> asyncpg.Pool:
    async with live_pipeline(pool, settings) as p:
        await build_full_log(p, settings)
    return pool


def test_the_thresholds_are_found() -> None:
    assert (rows, "COPY_FROM") in set(thresholds())


async def _diff_schema(conn: asyncpg.Connection, schema: str) -> list[object]:
    return [d for d in [await diff_table(conn, schema, t) for t in rb.tables_of(None)] if not d.clean]


@pytest.mark.parametrize("side", [SMALL, LARGE], ids=["every-batch-large", "every-batch-small"])
async def test_one_connection_rebuild_over_every_event_type(full_log: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
                                                            side: int) -> None:
    """The engine without a reader: the log read on the rebuilding connection, between the applies."""
    set_thresholds(monkeypatch, side)
    for page in (1, 3, 5000):
        async with full_log.acquire() as conn:
            tx = await rb.open_repeatable_read(conn)
            try:
                await rebuild_into(conn, "replay_paths", None, None, batch=page, apply_batch=page)
                dirty = await _diff_schema(conn, "replay_paths")
            finally:
                await tx.rollback()
        assert dirty == [], (page, dirty)


@pytest.mark.parametrize("side", [SMALL, LARGE], ids=["every-batch-large", "every-batch-small"])
async def test_audit_rebuild_over_every_event_type(full_log: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
                                                   side: int) -> None:
    """The engine with a reader (a page ahead on a second connection) in pages of 1 to the whole log."""
    set_thresholds(monkeypatch, side)
    for page, apply_batch in ((1, 1), (3, 7), (5000, 50_000)):
        async with full_log.acquire() as conn, full_log.acquire() as reader:
            tx = await rb.open_repeatable_read(conn)
            try:
                n = await rebuild_into(conn, "replay_paths", None, None, reader=reader, batch=page,
                                       apply_batch=apply_batch)
                assert n == await conn.fetchval("SELECT count(*) FROM events")
                dirty = await _diff_schema(conn, "replay_paths")
            finally:
                await tx.rollback()
        assert dirty == [], (page, dirty)


@pytest.mark.parametrize("side", [SMALL, LARGE], ids=["every-batch-large", "every-batch-small"])
async def test_swap_catch_up_over_every_event_type(full_log: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
                                                   side: int) -> None:
    """--swap's catch-up (the events after the rebuild's snapshot), here all of them: a snapshot taken
    before the first transaction sees none."""
    set_thresholds(monkeypatch, side)
    for page in (1, 5000):
        async with full_log.acquire() as conn:
            tx = await rb.open_repeatable_read(conn)
            try:
                await rebuild_into(conn, "replay_paths", None, START)  # empty tables, same DDL
                assert await catch_up(conn, "replay_paths", None, "3:3:", batch=page) == await conn.fetchval(
                    "SELECT count(*) FROM events")
                dirty = await _diff_schema(conn, "replay_paths")
            finally:
                await tx.rollback()
        assert dirty == [], (page, dirty)


@pytest.mark.parametrize("side", [SMALL, LARGE], ids=["every-batch-large", "every-batch-small"])
async def test_periodya_replay_until_and_swap_over_every_event_type(
        full_log: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, side: int) -> None:
    """The CLI's own function, as `periodya replay` runs it: default, each projection, --until, --swap."""
    set_thresholds(monkeypatch, side)

    async def replay(names: list[str] | None = None, until: str | None = None, swap: bool = False) -> str:
        out = io.StringIO()
        status = await run_replay(full_log, names, until, swap, 10, out)
        assert status == 0, out.getvalue()
        return out.getvalue()

    assert (await replay()).rstrip().endswith("identical")
    for name in PROJECTIONS:
        assert (await replay([name])).rstrip().endswith("identical")
    last = await full_log.fetchval("SELECT max(seq) FROM events")
    text = await replay(until=str(last))
    for table in rb.tables_of(None):
        n = await full_log.fetchval(f"SELECT count(*) FROM {table}")
        assert f"\n{table}: {n} rows\n" in text, (table, n, text)
    assert "swapped in" in await replay(swap=True)
    assert [d for d in await replay_and_diff(full_log, "replay_check") if not d.clean] == []


def test_every_projection_is_in_the_registry_walked_here() -> None:
    modules = {m for m in vars(projections_pkg).values() if isinstance(m, ModuleType)
               and hasattr(m, "apply") and hasattr(m, "TABLES")}
    assert modules == set(PROJECTIONS.values())


async def test_shared_connection_serves_every_port_method_and_delegates_the_rest(pool: asyncpg.Pool) -> None:
    """The audit rebuild's wrapper has every method of the port the apply functions are typed against,
    and anything else of the connection (here executemany and fetchval, which issue 11's apply called)
    runs too, one statement at a time, instead of failing with AttributeError."""
    import asyncio
    import inspect

    from periodya.audit.shared_connection import SharedConnection
    from periodya.projections.port import ProjectionConnection

    port = {name for name, _ in inspect.getmembers(ProjectionConnection, inspect.iscoroutinefunction)}
    assert port == {"execute", "fetch", "copy_records_to_table"}
    assert all(name in vars(SharedConnection) for name in port)
    async with pool.acquire() as conn, conn.transaction():
        shared = SharedConnection(conn)
        await shared.execute("CREATE TEMP TABLE t (n int)")
        await asyncio.gather(shared.executemany("INSERT INTO t VALUES ($1)", [(1,), (2,)]),
                             shared.copy_records_to_table("t", records=[(3,)], columns=["n"]),
                             shared.fetch("SELECT pg_sleep(0.01)"))
        assert await shared.fetchval("SELECT sum(n) FROM t") == 6
