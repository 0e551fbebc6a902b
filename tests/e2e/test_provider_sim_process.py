"""`periodya provider-sim` as a real process: it serves the adapter; SIGTERM or SIGINT stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest

from periodya.provider import StripePayoutsClient

API_KEY = "sk_test_e2e"
SECRET = "whsec_e2e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_ready(url: str, proc: subprocess.Popen[str], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                async with session.get(url + "/_sim/stats") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, "provider-sim did not start"
            await asyncio.sleep(0.05)


def start(port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "periodya", "provider-sim", "--port", str(port)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_provider_sim_serves_and_stops_on_signal(signum: signal.Signals) -> None:
    port = free_port()
    proc = start(port, {"PERIODYA_WEBHOOK_SECRET": SECRET, "PERIODYA_PROVIDER_API_KEY": API_KEY})
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, proc)
        async with StripePayoutsClient(url, API_KEY) as client:
            payout = await client.create_payout("pay_e2e", 4200, "EUR", "ba_e2e")
            assert (await client.retrieve_payout(payout.id)).payout_id == "pay_e2e"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"listening on {url}" in stdout


def test_missing_webhook_secret_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PERIODYA_WEBHOOK_SECRET"}
    result = subprocess.run([sys.executable, "-m", "periodya", "provider-sim", "--port", str(free_port())],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "periodya: error: PERIODYA_WEBHOOK_SECRET is required: the simulator signs its webhooks with it"]


def test_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "periodya", "provider-sim", "--port", str(port)],
                                env={**os.environ, "PERIODYA_WEBHOOK_SECRET": SECRET}, capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen" in lines[0], result.stderr
