"""`periodya ...`: the command-line entry point, and its registry of every command (COMMANDS below).

Every failure the user can fix is one line, exit 2. One module per group of commands: system (migrate, up,
serve, scheduler, run), admin, audit and replay, ops (the HTTP API's client), cron, provider_sim."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from periodya.cli import admin, audit, cron, ops, provider_sim, replay, system
from periodya.config import Settings
from periodya.errors import PeriodyaError

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

# The registry: every `periodya COMMAND` and the function that runs it. build_parser adds the sub-parsers
# (in --help's order) and checks that they are exactly these names.
COMMANDS: dict[str, Command] = {
    "migrate": system.cmd_migrate,
    "verify": audit.cmd_verify,
    "provider-sim": provider_sim.cmd_provider_sim,
    "admin": admin.cmd_admin,
    "up": system.cmd_up,
    "serve": system.cmd_serve,
    "scheduler": system.cmd_scheduler,
    "run": system.cmd_run,
    "replay": replay.cmd_replay,
    "balances": audit.cmd_balances,
    "history": audit.cmd_history,
    "export": audit.cmd_export,
    "digest": audit.cmd_digest,
    "verify-export": audit.cmd_verify_export,
    "ops": ops.cmd_ops,
    "cron": cron.cmd_cron,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="periodya", description="Periodya escrow and payout ledger")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else the embedded server)")
    parser.add_argument("--data-dir", help="embedded server data dir (default: $PERIODYA_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="apply schema.sql (idempotent)")
    sub.add_parser("verify", help="check every stream's hash chain; exit 1 naming the first broken link")
    provider_sim.add_parser(sub)
    admin.add_parser(sub)
    system.add_parser(sub)  # up, serve, scheduler, run
    audit.add_parser(sub)  # replay, balances, history, export, digest, verify-export; describes `verify`
    ops.add_parser(sub)  # `periodya ops ...`: the HTTP API's on-call client
    cron.add_parser(sub)
    if set(sub.choices) != set(COMMANDS):
        raise AssertionError(f"sub-parsers without a command, or commands without a sub-parser: "
                             f"{sorted(set(sub.choices) ^ set(COMMANDS))}")
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
    except BrokenPipeError:  # the reader went away (`periodya ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 141  # 128 + SIGPIPE
