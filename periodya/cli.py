"""`periodya ...`: the command-line entry point. Every failure the user can fix is one line, exit 2."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from periodya import db
from periodya.config import Settings
from periodya.errors import PeriodyaError

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


async def open_pool(settings: Settings, *, check_schema: bool = True, **kwargs: Any) -> Any:
    from periodya.deps import open_pool as service_open_pool

    return await service_open_pool(settings, check_schema=check_schema, **kwargs)


@command("migrate")
async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    pool = await open_pool(settings, check_schema=False, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
    finally:
        await pool.close()
    print("schema is up to date")
    return 0


@command("verify")
async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="periodya", description="Periodya escrow and payout ledger")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else the embedded server)")
    parser.add_argument("--data-dir", help="embedded server data dir (default: $PERIODYA_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="apply schema.sql (idempotent)")
    sub.add_parser("verify", help="check every stream's hash chain; exit 1 naming the first broken link")
    from periodya.provider import sim_cli  # here, not at the top: sim_cli imports this module for @command

    sim_cli.add_parser(sub)
    from periodya.admin import cli as admin_cli  # here, not at the top: it imports this module

    admin_cli.add_parser(sub)
    from periodya import ops_cli  # here, not at the top: it imports this module

    ops_cli.add_parser(sub)
    from periodya.audit import cli as audit_cli  # replay, balances, history, export, digest; extends `verify`

    audit_cli.add_parser(sub)
    from periodya.opsclient import commands as opsclient  # `periodya ops ...`: the HTTP API's on-call client

    opsclient.add_parser(sub)
    from periodya import cron_cli  # here, not at the top: it imports this module

    cron_cli.add_parser(sub)
    return parser



def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.database_url is not None:
            db_url = args.database_url
            from periodya.config import validate_database_url

            validate_database_url(db_url)
            settings = settings.with_overrides(database_url=db_url)
        if args.data_dir is not None:
            from pathlib import Path

            settings = settings.with_overrides(data_dir=Path(args.data_dir))
        settings = settings.with_local_secrets()
        return asyncio.run(COMMANDS[args.command](args, settings))
    except PeriodyaError as exc:
        print(f"periodya: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
