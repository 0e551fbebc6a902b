"""`periodya replay [--projection NAME|all]... [--until POSITION|TIMESTAMP] [--swap] [--limit N]`.

Without --until: rebuild the projections from the whole log into a scratch schema and diff every table
against live in the same snapshot; exit 0 when identical, 1 naming each differing row (by primary key)
and column, live against replayed, at most --limit rows per table. With --until: rebuild the log up to
that point (audit.points) and print the row counts; live shows the present, so nothing is diffed.
With --swap: after the rebuild passes the money invariants, swap it in for the live tables
(audit.swap) and print what the swap repaired; exit 0 when swapped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from periodya.audit import replay as rb
from periodya.audit.diff import TableDiff
from periodya.audit.points import AuditError, parse_point, resolve
from periodya.audit.swap import swap_in
from periodya.config import Settings
from periodya.deps import open_pool
from periodya.projections import PROJECTIONS


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="rebuild projections from the log and diff them against live (exit 1 if any "
                                      "differ)", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--projection", action="append", choices=[*PROJECTIONS, "all"], metavar="NAME",
                   help=f"a projection to rebuild (repeatable; default all): {', '.join(PROJECTIONS)}")
    p.add_argument("--until", metavar="POSITION|TIMESTAMP",
                   help="rebuild only the log up to this position (global seq) or RFC 3339 moment; prints counts")
    p.add_argument("--swap", action="store_true",
                   help="replace the live tables with the verified rebuild (briefly locks them)")
    p.add_argument("--limit", type=int, default=10, metavar="N", help="differing rows shown per table (default 10)")


def _value(v: Any) -> str:
    return orjson.dumps(v).decode()


def _key(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in key.items())


def _short(row: dict[str, Any], width: int = 240) -> str:
    text = _value(row)
    return text if len(text) <= width else text[: width - 3] + "..."


def render_diff(d: TableDiff, counts: tuple[int | None, int], limit: int, columns: Sequence[str] = ()) -> list[str]:
    """A bounded, readable diff of one table: at most `limit` rows, then "... and K more". Differing
    columns are listed in `columns` order (the table's), others after them."""
    order = {c: i for i, c in enumerate(columns)}
    live, replayed = counts
    if d.clean:
        return [f"{d.table}: identical ({replayed} rows)"]
    lines = [f"{d.table}: {d.total} row(s) differ (live {live} rows, replayed {replayed})"]
    shown = 0
    for key, live_cols, replayed_cols in d.changed:
        if shown == limit:
            break
        lines.append(f"  row {_key(key)}: {len(live_cols)} column(s) differ")
        lines += [f"    {col}: live {_value(live_cols[col])} | replayed {_value(replayed_cols[col])}"
                  for col in sorted(live_cols, key=lambda c: order.get(c, len(order)))]
        shown += 1
    for label, rows in (("only in live (the log does not produce it)", d.only_live),
                        ("missing from live (the log produces it)", d.only_replayed)):
        for row in rows:
            if shown == limit:
                break
            lines.append(f"  row {_key({k: row[k] for k in d.key})}: {label}: {_short(row)}")
            shown += 1
    if d.total > shown:
        lines.append(f"  ... and {d.total - shown} more")
    return lines


async def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    pool = await open_pool(settings, min_size=1, max_size=2)
    try:
        return await run_replay(pool, args.projection, args.until, args.swap, args.limit, sys.stdout)
    finally:
        await pool.close()


async def run_replay(pool: Any, names: Sequence[str] | None, until: str | None, swap: bool, limit: int,
                     out: TextIO) -> int:
    if until is not None and swap:
        raise AuditError("--swap replaces the live tables with the whole log's rebuild; it cannot take --until")
    if until is not None:
        return await _replay_until(pool, names, until, out)
    async with pool.acquire() as conn, pool.acquire() as reader:
        tx = await rb.open_repeatable_read(conn)
        try:
            result = await rb.rebuild(conn, names, limit=limit, reader=reader, keep_indexes=swap)
            problems = await rb.invariant_problems(conn, result.scratch, names) if swap else []
        except BaseException:
            await tx.rollback()
            raise
        await (tx.commit() if swap and not problems else tx.rollback())
    print(f"replayed {result.events} events into scratch schema {result.scratch} and diffed against live "
          "in one snapshot", file=out)
    for d in result.diffs:
        for line in render_diff(d, result.counts[d.table], limit, result.columns.get(d.table, ())):
            print(line, file=out)
    if not swap:
        print("identical" if result.clean else "DIFFERENCES FOUND", file=out)
        return 0 if result.clean else 1
    if problems:
        for problem in problems:
            print(f"NOT SWAPPED: the rebuild fails an invariant: {problem}", file=out)
        return 1
    caught_up = await swap_in(pool, result.scratch, names, result.snapshot)
    repaired = sum(d.total for d in result.diffs)
    print(f"swapped in {len(result.counts)} table(s) ({', '.join(result.counts)}); applied {caught_up} event(s) "
          f"committed during the rebuild; {repaired} differing row(s) replaced; previous tables kept in schema "
          "replay_retired", file=out)
    return 0


async def _replay_until(pool: Any, names: Sequence[str] | None, until: str, out: TextIO) -> int:
    point = parse_point(until)
    async with pool.acquire() as conn, pool.acquire() as reader:
        tx = await rb.open_repeatable_read(conn)
        try:
            await conn.fetchval("SELECT 1")  # fix the snapshot before resolving the point
            position = await resolve(conn, point)
            result = await rb.rebuild(conn, names, position=position, diff=False, reader=reader, keep_indexes=False)
        finally:
            await tx.rollback()  # nothing of the scratch schema survives
    where = f"position {position.seq} (tx {position.tx})" if position.seq else "the empty log (no event)"
    print(f"rebuilt as of {point}: the log up to {where}, {result.events} events", file=out)
    print("not diffed: the live tables show the present, not that moment", file=out)
    for table, (_, rows) in result.counts.items():
        print(f"{table}: {rows} rows", file=out)
    return 0
