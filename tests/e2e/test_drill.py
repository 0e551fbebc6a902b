"""The whole-system drill, small: `python -m bench drill --payouts 200 --kills 3 --seed 11` as a real process.

Two `periodya serve`, two cron loops, the provider simulator with every fault on, three SIGKILLs of a
server or cron loop, then the drill's audit (bench/drill.py). The drill must exit 0 and end with the
summary line naming no duplicate, no lost, no unbalanced and no unsettled payout. On failure the
drill's own output (its PROBLEM and AUDIT lines, and where the process logs are) is the message.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(r"^drill: 200 payouts, 3 kills, 0 duplicates, 0 lost, 0 unbalanced, 0 not terminal, audit ok$")


@pytest.mark.slow
async def test_small_drill_ends_clean(server_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERIODYA_")}
    env.update({"DATABASE_URL": server_url, "PYTHONUNBUFFERED": "1"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench", "drill", "--payouts", "200", "--kills", "3", "--seed", "11",
        "--history-sample", "3", "--settle-seconds", "90", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
    except TimeoutError:
        proc.send_signal(signal.SIGTERM)  # the drill stops every process it started on SIGTERM
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        pytest.fail("the drill did not finish in 240 s:\n" + out.decode(errors="replace")[-6000:])
    text = out.decode(errors="replace")
    last = text.strip().splitlines()[-1] if text.strip() else ""
    assert proc.returncode == 0 and SUMMARY.match(last), f"exit {proc.returncode}:\n{text[-8000:]}"
