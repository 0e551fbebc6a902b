"""SIGKILL a real runner process between the provider's acceptance and the SENT record.

The outbox runner (`periodya run outbox`, a real process) is paused by the fault hook right after
the provider accepted the payout and is killed there with SIGKILL. The payout is then stuck in
SENDING with a payout at the provider that the ledger does not know about. Repair (a second real
process, with its threshold shortened) must record that same provider payout: never a second one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import asyncpg

from periodya.config import Settings
from tests.integration.pipeline import API_KEY, WEBHOOK_SECRET, live_pipeline


async def _cli(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "periodya", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_sigkill_after_provider_accept_then_repair(pool: asyncpg.Pool, settings: Settings, database_url: str,
                                                         tmp_path: Path) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-kill", "p1", 2_500)
        marker = tmp_path / "paused"
        env = {**os.environ, "DATABASE_URL": database_url, "PERIODYA_PROVIDER_URL": p.sim_url,
               "PERIODYA_PROVIDER_API_KEY": API_KEY, "PERIODYA_WEBHOOK_SECRET": WEBHOOK_SECRET,
               "PERIODYA_LOG_LEVEL": "warning"}
        pause = {"PERIODYA_FAULT_PAUSE": "after_provider_accept", "PERIODYA_FAULT_FILE": str(marker)}
        runner = await _cli({**env, **pause}, "run", "outbox")
        for _ in range(300):
            if marker.exists() or runner.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert marker.exists(), (await runner.communicate())
        first_provider_id = marker.read_text()
        runner.send_signal(signal.SIGKILL)
        await runner.wait()
        assert runner.returncode == -signal.SIGKILL

        row = await pool.fetchrow("SELECT status, provider_payout_id FROM payouts WHERE payout_id = 'po-kill'")
        assert (row["status"], row["provider_payout_id"]) == ("SENDING", None)
        assert (await p.sim_stats())["payoutsCreated"] == 1

        await asyncio.sleep(0.3)
        repair = await _cli({**env, "PERIODYA_SENDING_STUCK_MINUTES": "0.001"}, "run", "repair")
        out, err = await repair.communicate()
        assert repair.returncode == 0, err.decode()
        assert '"sent": 1' in out.decode()

        row = await pool.fetchrow("SELECT status, provider_payout_id FROM payouts WHERE payout_id = 'po-kill'")
        assert (row["status"], row["provider_payout_id"]) == ("SENT", first_provider_id)
        stats = await p.sim_stats()
        assert (stats["payoutsCreated"], stats["idempotentReplays"]) == (1, 1)
        assert [sp["id"] for sp in await p.sim_payouts()] == [first_provider_id]
