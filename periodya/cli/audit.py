"""The audit commands: replay, balances, history, export, digest, verify-export, and `verify` (extended
here to re-check every recorded daily digest after the hash chains)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import orjson

from periodya.audit import daily_digests as digests
from periodya.audit import history, text
from periodya.audit.balances_asof import balances_as_of
from periodya.audit.digest_format import Digester
from periodya.audit.export import Range, event_line, export_rows
from periodya.audit.export_check import check_export, read_digests
from periodya.audit.points import AuditError, above_horizon, parse_point
from periodya.cli import replay
from periodya.config import Settings
from periodya.deps import open_pool
from periodya.domain.errors import NotFound
from periodya.eventstore.model import Position
from periodya.handlers.unit_of_work import Meta


def add_parser(sub: Any) -> None:
    replay.add_parser(sub)
    verify = sub.choices.get("verify")
    if verify is not None:  # `verify`'s sub-parser is added by periodya.cli (its place in --help)
        verify.description = ("Recompute every stream's hash chain (naming the first broken link of each), then "
                              "every daily digest recorded in the log; exit 1 on any failure.")
    bal = sub.add_parser("balances", help="account balances as of a position or moment, from the log")
    bal.add_argument("--as-of", required=True, metavar="POSITION|TIMESTAMP",
                     help="a global seq (the log up to that event in commit order) or an RFC 3339 moment")
    bal.add_argument("--account", action="append", metavar="ACCOUNT", help="only this account (repeatable)")
    bal.add_argument("--json", action="store_true", help="print JSON instead of a table")
    hist = sub.add_parser("history", help="the whole timeline of a payout, an escrow or an account, from the log")
    hist.add_argument("kind", choices=["payout", "escrow", "account"])
    hist.add_argument("id", help="payout id (or the provider's id), escrow id, or account (e.g. payable:PAYEE)")
    hist.add_argument("--json", action="store_true", help="print JSON instead of a table")
    exp = sub.add_parser("export", help="events as JSON Lines with their hash-chain columns, in commit order")
    exp.add_argument("--from", dest="start", metavar="POSITION|TIMESTAMP", help="first position, or recorded_at >= T")
    exp.add_argument("--to", dest="end", metavar="POSITION|TIMESTAMP", help="last position, or recorded_at < T")
    exp.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")
    dig = sub.add_parser("digest", help="daily digests of the log: record one, or show the recorded ones")
    dig_actions = dig.add_subparsers(dest="digest_command", required=True, metavar="ACTION")
    rec = dig_actions.add_parser("record", help="record the digest of a closed UTC day (idempotent)")
    rec.add_argument("--day", help="YYYY-MM-DD (default: yesterday, UTC)")
    show = dig_actions.add_parser("show", help="print recorded digests as JSON Lines (the file verify-export takes)")
    show.add_argument("--from", dest="first", help="first day YYYY-MM-DD")
    show.add_argument("--to", dest="last", help="last day YYYY-MM-DD")
    show.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")
    ver = sub.add_parser("verify-export", help="check an export file against digests (no database) or the database")
    ver.add_argument("file", type=Path)
    how = ver.add_mutually_exclusive_group(required=True)
    how.add_argument("--digest", type=Path, metavar="FILE", help="digest records (from `periodya digest show`)")
    how.add_argument("--against-db", action="store_true", help="recompute the range's digest from the database")
    ver.add_argument("--from", dest="start", help="with --against-db: the range the export was asked for")
    ver.add_argument("--to", dest="end", help="with --against-db: the range the export was asked for")


@contextmanager
def _output(path: Path | None) -> Iterator[Any]:
    if path is None:
        yield sys.stdout.buffer
    else:
        with path.open("wb") as f:
            yield f


def _dump(body: Any) -> None:
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")


async def _verify_chains(settings: Settings) -> int:
    from periodya.eventstore.verify import verify_chains

    pool = await open_pool(settings)
    try:
        report = await verify_chains(pool)
    finally:
        await pool.close()
    print(f"hash chains: {report.streams} streams, {report.events} events checked")
    for link in report.broken:
        print(f"BROKEN {link}")
    print("ok" if report.ok else f"{len(report.broken)} broken chain(s)")
    return 0 if report.ok else 1


async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """The hash chains, then every recorded daily digest, recomputed."""
    status = await _verify_chains(settings)
    pool = await open_pool(settings, min_size=1, max_size=1)
    try:
        outcomes = await digests.verify_digests(pool)
    finally:
        await pool.close()
    bad = [o for o in outcomes if o.status == digests.MISMATCH]
    for o in bad:
        print(f"DIGEST MISMATCH day {o.day}: " + "; ".join(o.problems))
    print(f"daily digests: {len(outcomes)} recorded, {len(outcomes) - len(bad)} match the log")
    print("ok" if not bad else f"{len(bad)} digest mismatch(es)")
    return 1 if bad or status else 0


async def cmd_balances(args: argparse.Namespace, settings: Settings) -> int:
    pool = await open_pool(settings, min_size=1, max_size=1)
    try:
        result = await balances_as_of(pool, parse_point(args.as_of), args.account)
    finally:
        await pool.close()
    if args.json:
        _dump({"asOf": args.as_of, "position": {"seq": result.position.seq, "tx": result.position.tx},
               "unsettled": result.unsettled, "balances": [r.as_json() for r in result.rows]})
        return 0
    print(f"balances as of {args.as_of}: the log up to position {result.position.seq} (tx {result.position.tx})")
    if result.unsettled:
        print("note: a transaction still in flight may yet commit inside this prefix")
    rows = [(r.account, r.currency, r.balance, r.debits, r.credits, r.last_seq) for r in result.rows]
    print("\n".join(text.table(["ACCOUNT", "CURRENCY", "BALANCE", "DEBITS", "CREDITS", "LAST_SEQ"], rows,
                               numeric=(2, 3, 4, 5))))
    return 0


def _timeline_lines(body: dict[str, Any]) -> list[str]:
    rows = [(e["position"], e["recordedAt"], f"{e['stream']} v{e['version']}", e["type"], e["actor"], e["reason"],
             e["requestId"], text.detail(e["data"], ("payoutId", "escrowId"))) for e in body["events"]]
    return text.table(["POS", "RECORDED_AT", "STREAM", "TYPE", "ACTOR", "REASON", "REQUEST", "DETAIL"], rows,
                      numeric=(0,))


def _account_lines(body: dict[str, Any]) -> list[str]:
    rows = [(e["position"], e["recordedAt"], e["groupId"], e["kind"], e["subject"], e["currency"], e["debit"],
             e["credit"], e["balance"], e["actor"], e["requestId"]) for e in body["entries"]]
    totals = ", ".join(f"{b['balance']} {b['currency']}" for b in body["balances"])
    return [f"account {body['account']}: balance {totals}", *text.table(
        ["POS", "RECORDED_AT", "GROUP", "KIND", "SUBJECT", "CUR", "DEBIT", "CREDIT", "BALANCE", "ACTOR", "REQUEST"],
        rows, numeric=(0, 6, 7, 8))]


async def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    pool = await open_pool(settings, min_size=1, max_size=1)
    try:
        fetch = {"payout": history.payout_history, "escrow": history.escrow_history,
                 "account": history.account_history}[args.kind]
        body = await fetch(pool, args.id)
    except NotFound as exc:
        print(f"periodya: {exc}", file=sys.stderr)
        return 1
    finally:
        await pool.close()
    if args.json:
        _dump(body)
        return 0
    if args.kind == "account":
        print("\n".join(_account_lines(body)))
        return 0
    state = body["state"] or {}
    title = f"{args.kind} {body.get('payoutId') or body.get('escrowId')}"
    summary = ", ".join(f"{k} {v}" for k, v in state.items() if v not in (None, False, 0, "") and k != "version")
    print(f"{title}: {summary}")
    print("\n".join(_timeline_lines(body)))
    return 0


def _range(start: str | None, end: str | None) -> Range:
    return Range(parse_point(start) if start else None, parse_point(end) if end else None)


async def _export(pool: Any, rng: Range, sink: Any) -> tuple[Digester, bool]:
    """Write the range to `sink` (if any); its digest, and whether transactions in flight may yet add to it."""
    digester, last_tx = Digester(), 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL statement_timeout = 0")
        async for row in export_rows(conn, rng):
            digester.add(row["seq"], row["tx"], bytes(row["hash"]))
            last_tx = max(last_tx, row["tx"])
            if sink is not None:
                sink.write(event_line(row))
        unsettled = await above_horizon(conn, Position(last_tx, 0)) if digester.count else False
    return digester, unsettled


async def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    rng = _range(args.start, args.end)
    pool = await open_pool(settings, min_size=1, max_size=1)
    try:
        with _output(args.out) as sink:
            digester, unsettled = await _export(pool, rng, sink)
    finally:
        await pool.close()
    span = f"seq {digester.first_seq}..{digester.last_seq}" if digester.count else "nothing"
    print(f"exported {digester.count} events ({span}) to {args.out or 'stdout'}", file=sys.stderr)
    if unsettled:
        print("note: transactions still in flight may yet commit events inside this range", file=sys.stderr)
    return 0


def _yesterday() -> date:
    return (datetime.now(UTC) - timedelta(days=1)).date()


async def cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    pool = await open_pool(settings, min_size=1, max_size=2)
    try:
        if args.digest_command == "record":
            from periodya.eventstore import EventStore

            day = date.fromisoformat(args.day) if args.day else _yesterday()
            outcome = await digests.record_daily_digest(EventStore(pool), day, meta=Meta(actor="cli"))
            record = outcome.computed.as_json() if outcome.computed else None
            print(orjson.dumps({"day": outcome.day, "status": outcome.status, "digest": record,
                                "problems": outcome.problems}).decode())
            return 1 if outcome.status in (digests.MISMATCH, digests.NOT_CLOSED) else 0
        first = date.fromisoformat(args.first) if args.first else None
        last = date.fromisoformat(args.last) if args.last else None
        records = await digests.recorded_days(pool, first, last)
    finally:
        await pool.close()
    with _output(args.out) as sink:
        for r in records:
            sink.write(orjson.dumps(r.as_json(), option=orjson.OPT_APPEND_NEWLINE))
    return 0


def _print_report(report: Any, out: TextIO) -> int:
    for problem in report.problems:
        print(f"PROBLEM {problem}", file=out)
    for day in report.unverified_days:
        print(f"UNVERIFIED day {day}: no digest covers it", file=out)
    print(f"{report.events} events, {report.digests_checked} digest(s) checked: "
          + ("ok" if report.ok else "NOT OK"), file=out)
    return 0 if report.ok else 1


async def cmd_verify_export(args: argparse.Namespace, settings: Settings) -> int:
    with args.file.open("rb") as f:
        lines = f.readlines()
    if args.digest is not None:
        with args.digest.open("rb") as f:
            records = read_digests(f)
        return _print_report(check_export(lines, records), sys.stdout)
    rng = _range(args.start, args.end)
    if rng.start is None or rng.end is None:
        seqs = [orjson.loads(line)["seq"] for line in lines if line.strip()]
        if not seqs:
            raise AuditError("the export is empty: give --from and --to to compare it with the database")
        rng = Range(rng.start or parse_point(str(seqs[0])), rng.end or parse_point(str(seqs[-1])))
    pool = await open_pool(settings, min_size=1, max_size=1)
    try:
        digester, _ = await _export(pool, rng, None)
    finally:
        await pool.close()
    return _print_report(check_export(lines, [digester.record(None)]), sys.stdout)
