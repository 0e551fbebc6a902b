"""`periodya provider-sim`: serve the provider simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import pydantic

from periodya.config import Settings
from periodya.errors import ConfigError
from periodya.logging import configure, get_logger

DEFAULT_PORT = 12111


def add_parser(sub: Any) -> None:
    """Add the `provider-sim` subcommand to periodya's subparsers."""
    parser = sub.add_parser(
        "provider-sim", help="serve the Stripe-protocol payout provider simulator (with fault knobs)",
        description="Serve the payout provider simulator. Reads PERIODYA_WEBHOOK_SECRET (required; webhooks are "
                    "signed with it) and PERIODYA_PROVIDER_API_KEY (the bearer key clients must send; unset: "
                    "any key). Fault knobs: POST /_sim/config.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--webhook-url", help="where to POST signed webhook events (also settable via /_sim/config)")
    parser.add_argument("--seed", type=int, help="seed for the fault dice, for repeatable drills")
    parser.add_argument("--auto-settle", action="store_true", help="settle every payout by itself (paid by default)")


async def cmd_provider_sim(args: argparse.Namespace, settings: Settings) -> int:
    from periodya.provider.simulator import running_simulator

    if not settings.webhook_secret:
        raise ConfigError("PERIODYA_WEBHOOK_SECRET is required: the simulator signs its webhooks with it")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be a TCP port number, got {args.port}")
    configure(settings.log_level)
    log = get_logger("periodya.provider.sim")
    config = {"autoSettle": True} if args.auto_settle else {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_simulator(settings.provider_api_key, settings.webhook_secret,
                                     webhook_url=args.webhook_url, seed=args.seed, config=config,
                                     host=args.host, port=args.port) as url:
            log.info("provider_sim_listening", url=url, any_api_key=settings.provider_api_key is None)
            print(f"provider-sim listening on {url}", flush=True)
            await stop.wait()
            log.info("provider_sim_stopping")
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"provider-sim: {'.'.join(map(str, first['loc']))}: {message}") from None
    except OSError as exc:
        raise ConfigError(f"provider-sim cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0
