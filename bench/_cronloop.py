"""A cron runner for drills: `python -m bench._cronloop --api URL [--api URL]... [--scale S]`.

It calls the run endpoints exactly as an external scheduler does (POST /api/admin/ops/run/JOB with
`Authorization: Bearer $PERIODYA_CRON_SECRET`), on the runbook's table compressed into seconds: the
built-in `periodya scheduler` fires on whole minutes (croniter, five fields) and cannot be sped up,
so a drill that wants its stuck work healed in seconds drives the endpoints itself. Each job runs in
its own loop, one call at a time (like the scheduler, it never stacks runs of one job), and each call
goes to the next API in turn. Two of these processes overlap on purpose. Failures (a refused
connection while a server is down, a 5xx) are counted and printed, never fatal: the next tick retries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter

import aiohttp

TABLE = (("outbox", "", 0.5), ("webhooks", "", 0.5), ("reconcile-pull", "", 2.0), ("repair", "", 2.0),
         ("sentinel", "?mode=recent", 6.0))
"""job, query, seconds between the end of one call and the start of the next (before --scale)."""


async def loop(http: aiohttp.ClientSession, apis: list[str], job: str, query: str, every: float,
               offset: int, counts: Counter[str]) -> None:
    n = offset
    while True:
        api = apis[n % len(apis)]
        n += 1
        try:
            async with http.post(f"{api}/api/admin/ops/run/{job}{query}") as r:
                await r.read()
                counts[f"{job} {r.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            counts[f"{job} {type(exc).__name__}"] += 1
        await asyncio.sleep(every)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._cronloop", description=__doc__)
    parser.add_argument("--api", action="append", required=True, help="base URL of a `periodya serve` (repeatable)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every interval by this")
    parser.add_argument("--offset", type=int, default=0, help="start the round-robin at this API")
    args = parser.parse_args(argv)
    secret = os.environ.get("PERIODYA_CRON_SECRET")
    if not secret:
        print("cronloop: PERIODYA_CRON_SECRET is not set", file=sys.stderr)
        return 2
    counts: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {secret}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=120)) as http:
        tasks = [asyncio.create_task(loop(http, args.api, job, query, every * args.scale, args.offset, counts))
                 for job, query, every in TABLE]
        try:
            while True:
                await asyncio.sleep(10)
                print(time.strftime("%H:%M:%S"), dict(sorted(counts.items())), flush=True)
        finally:
            for task in tasks:
                task.cancel()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(sys.argv[1:])))
