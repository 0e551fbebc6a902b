"""`periodya cron export --target crontab|vercel|eventbridge|kubernetes`: the scheduler's table for another runner."""

from __future__ import annotations

import argparse
from typing import Any

from periodya.config import Settings

DEFAULT_BASE_URL = "https://periodya.example.com"


def add_parser(sub: Any) -> None:
    from periodya.runners.cron_export import TARGETS

    cron = sub.add_parser("cron", help="the runbook's cron table for an external scheduler")
    actions = cron.add_subparsers(dest="cron_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export", help="print the table for crontab, Vercel Cron, AWS EventBridge or Kubernetes",
        description="Print the built-in scheduler's table (the runbook's cron jobs, batch sizes from "
                    "PERIODYA_BATCH_*) in the target scheduler's format. Every entry calls its run endpoint "
                    "with the cron secret; no secret is printed.")
    export.add_argument("--target", required=True, choices=TARGETS, help="the scheduler to write for")
    export.add_argument("--base-url", default=DEFAULT_BASE_URL,
                        help=f"where the service answers (default {DEFAULT_BASE_URL})")


async def cmd_cron(args: argparse.Namespace, settings: Settings) -> int:
    from periodya.errors import ConfigError
    from periodya.runners.cron_export import export
    from periodya.runners.scheduler import schedule

    try:
        text = export(args.target, schedule(), args.base_url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(text, end="")
    return 0
