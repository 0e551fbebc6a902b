"""Balances as of a past position or moment equal what the live system showed at that moment."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from periodya.audit.balances_asof import balances_as_of
from periodya.audit.points import Point
from periodya.eventstore import EventStore
from tests.integration.horizon import settled as _settled
from tests.integration.test_audit_replay import PROGRAM
from tests.integration.test_ledger_properties import _run

COLUMNS = ("account", "currency", "balance", "debits", "credits", "protected", "last_seq", "updated_at")


class _AfterRelease:
    """A pool whose connections run `hook` when given back: after the command's transaction committed,
    before run_command returns, so the hook sees exactly the state that command left."""

    def __init__(self, pool: asyncpg.Pool, hook: Callable[[], Awaitable[None]]) -> None:
        self._pool, self._hook = pool, hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    @asynccontextmanager
    async def acquire(self) -> Any:
        async with self._pool.acquire() as conn:
            yield conn
        await self._hook()


async def _live(pool: asyncpg.Pool) -> tuple[int, datetime | None, list[tuple[Any, ...]]]:
    """The live balances and the newest event, in one snapshot."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow("SELECT coalesce(max(seq), 0) AS seq, max(recorded_at) AS at FROM events")
        rows = await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM balances ORDER BY account, currency")
    return head["seq"], head["at"], [tuple(r) for r in rows]


def _rows(result: Any) -> list[tuple[Any, ...]]:
    return [tuple(getattr(r, c) for c in COLUMNS) for r in result.rows]


async def test_balances_as_of_every_past_position_equal_the_live_balances_then(pool: asyncpg.Pool) -> None:
    seen: list[tuple[int, datetime | None, list[tuple[Any, ...]]]] = []

    async def snapshot() -> None:
        seen.append(await _live(pool))

    store = EventStore(pool)
    store.pool = _AfterRelease(pool, snapshot)
    await _run(store, "a-", PROGRAM)
    await _run(store, "b-", PROGRAM[::-1] + PROGRAM)
    positions = {seq: rows for seq, _, rows in seen}
    assert len(positions) > 20 and len({len(r) for r in positions.values()}) > 3
    await _settled(pool)
    for seq, rows in positions.items():
        result = await balances_as_of(pool, Point(seq=seq))
        assert (result.position.seq, _rows(result)) == (seq, rows), seq
        assert not result.unsettled
    # By moment: the newest event's recorded_at names the same prefix (commands ran one after another).
    for _, at, rows in seen[::5]:
        if at is not None:
            assert _rows(await balances_as_of(pool, Point(at=at))) == rows
    assert (await balances_as_of(pool, Point(seq=0))).rows == []


async def test_as_of_one_account_during_concurrent_commands(pool: asyncpg.Pool) -> None:
    """Under concurrency, every balance row the live system showed is the as-of balance of its account
    at the row's last_seq: lock-before-write puts each account's transactions in commit order in the log."""
    store = EventStore(pool)
    observed: set[tuple[Any, ...]] = set()
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            observed.update(tuple(r) for r in await pool.fetch(f"SELECT {', '.join(COLUMNS)} FROM balances"))
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    prefix = uuid.uuid4().hex[:4]
    # Shared payees and escrows across the programs: the same accounts are hit concurrently.
    await asyncio.gather(*[_run(store, f"{prefix}-", PROGRAM[i:] + PROGRAM[:i]) for i in range(6)])
    done.set()
    await sampler
    final = await pool.fetch(f"SELECT {', '.join(COLUMNS)} FROM balances")
    observed.update(tuple(r) for r in final)  # the final state is always among what the system showed
    assert len(final) >= 8 and len(observed) > len(final)  # and at least one intermediate state was seen
    for row in observed:
        account, currency, *_ = row
        result = await balances_as_of(pool, Point(seq=row[6]), [account])
        [asof] = [r for r in _rows(result) if r[1] == currency]
        assert asof == row, (asof, row)


async def test_balances_cli_output(pool: asyncpg.Pool, settings: Any) -> None:
    from periodya.cli import audit as audit_cli
    from periodya.cli import build_parser

    await _run(EventStore(pool), "c-", PROGRAM[:3])
    seq = await pool.fetchval("SELECT max(seq) FROM events")
    args = build_parser().parse_args(["balances", "--as-of", str(seq), "--account", "payable:c-p0"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await audit_cli.cmd_balances(args, settings) == 0
    text = out.getvalue()
    assert f"the log up to position {seq}" in text
    assert "payable:c-p0  USD" in text and "escrow:" not in text
