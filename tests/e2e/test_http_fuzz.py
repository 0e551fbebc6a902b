"""Issue 13, "make the class impossible": Hypothesis throws raw hostile HTTP at a real `periodya serve`
process (bench/fuzz.py: random methods, routes with random ids, header bytes, query strings and JSON,
under every kind of credential, and correctly signed but malformed
provider events) and every answer must be below 500, problem+json when an error, and
write at most MAX_LOG_BYTES to the server's real log. A fixed seed and budget here; `python -m bench
fuzz --examples N --seed S` runs longer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.fuzz import MAX_LOG_BYTES, Target, run
from tests.conftest import CRON_SECRET, SERVICE_TOKEN
from tests.e2e.procs import WEBHOOK_SECRET, running_system

EXAMPLES = 600
SEED = 20261207


async def test_hostile_http_never_gets_a_5xx_or_floods_the_log(database_url: str, tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, env={"PERIODYA_LOG_LEVEL": "info"}) as system:
        host, port = system.api.removeprefix("http://").split(":")
        target = Target(host, int(port), system.server.log,
                        {"service": SERVICE_TOKEN, "cron": CRON_SECRET, "admin": system.admin_token},
                        webhook_secret=WEBHOOK_SECRET)
        stats = await asyncio.to_thread(run, target, EXAMPLES, SEED)
        print(stats.line())
        assert stats.requests >= EXAMPLES * 0.9  # (Hypothesis may stop early only when it runs out of inputs)
        assert stats.max_log_bytes <= MAX_LOG_BYTES
        assert len(stats.statuses) >= 5, stats.statuses  # the requests reached more than the front door
        assert (await system.health())["status"] == "ok"
