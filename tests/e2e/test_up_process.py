"""`periodya up` as a real process, the README's main command, on its own embedded PostgreSQL.

* The whole system comes up from an empty data dir: embedded server, schema, scheduler, simulator on its
  fixed port, secrets generated into `<data dir>/secrets.env` (0600) and reused on the next start; the
  commands it prints take a payout to FINALIZED; SIGTERM stops everything, the PostgreSQL server too.
* A sibling `periodya` process SIGKILLed while sharing the server must not keep it running after `up`
  stops (issue 11, defect 5: the dead PID stayed in the wheel's handle list and was trusted).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from periodya.cli.up_banner import EXAMPLE_EMAIL, EXAMPLE_PASSWORD
from periodya.embedded import postgres_processes
from tests.e2e.procs import Proc, base_env, eventually, free_port, spawn, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data dir with a short path (the server's socket lives in it)."""
    parent = Path(tempfile.mkdtemp(prefix="pup-"))
    os.chmod(parent, 0o755)  # as root, the embedded server's user must be able to enter it
    try:
        yield parent / "data"
    finally:
        for proc in postgres_processes(parent / "data" / "pgdata"):  # never leave a server behind
            proc.kill()
        shutil.rmtree(parent, ignore_errors=True)


def up_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A newcomer's environment: no secrets, no database URL, no provider; only where and which ports."""
    env = {k: v for k, v in base_env().items() if not k.startswith("PERIODYA_")}
    env.update({"PERIODYA_DATA_DIR": str(data_dir), "PERIODYA_PORT": str(free_port()),
                "PERIODYA_SIM_PORT": str(free_port()), "PERIODYA_LOG_LEVEL": "warning", **extra})
    return env


async def start_up(env: dict[str, str], log_dir: Path) -> tuple[Proc, str]:
    proc = await spawn("up", ["up"], env, log_dir)
    url = f"http://127.0.0.1:{env['PERIODYA_PORT']}"
    try:
        await wait_http(f"{url}/livez", proc, seconds=120)
        async def banner() -> bool:
            return "periodya up" in proc.output()

        await eventually(banner, "up's banner", seconds=30)
    except BaseException:
        await proc.stop()
        raise
    return proc, url


async def stopped_cleanly(proc: Proc, pgdata: Path) -> None:
    assert await proc.stop(60) == 0, proc.output()

    async def no_server() -> bool:
        return not postgres_processes(pgdata)

    await eventually(no_server, f"no postgres process of {pgdata}", seconds=30)
    assert not (pgdata / "postmaster.pid").exists()


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


async def test_up_stops_its_server_after_a_sibling_was_killed(data_dir: Path, tmp_path: Path) -> None:
    env = up_env(data_dir)
    up, _ = await start_up(env, tmp_path)
    sibling_env = {**env, "PERIODYA_PORT": str(free_port())}
    sibling = await spawn("serve", ["serve"], sibling_env, tmp_path)
    try:
        await wait_http(f"http://127.0.0.1:{sibling_env['PERIODYA_PORT']}/livez", sibling, seconds=60)
        assert await sibling.kill() != 0  # SIGKILL: its handle on the server can never be released by it
        assert postgres_processes(data_dir / "pgdata"), "the server must still run for up"
    finally:
        await sibling.kill()
    await stopped_cleanly(up, data_dir / "pgdata")


async def _sh(command: str, env: dict[str, str]) -> str:
    """Run one printed command line as a newcomer would paste it into bash; returns its stdout."""
    proc = await asyncio.create_subprocess_exec("bash", "-c", command, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"{command}\n{out.decode()}"
    return out.decode()


async def test_up_from_nothing_to_a_finalized_payout_and_back_to_nothing(data_dir: Path, tmp_path: Path) -> None:
    env = up_env(data_dir)
    up, api = await start_up(env, tmp_path)
    try:
        secrets_file = data_dir / "secrets.env"
        assert stat.S_IMODE(os.stat(secrets_file).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
        secrets = read_env_file(secrets_file)
        assert set(secrets) >= {"PERIODYA_SERVICE_TOKEN", "PERIODYA_CRON_SECRET", "PERIODYA_WEBHOOK_SECRET",
                                "PERIODYA_PROVIDER_API_KEY"}
        assert all(len(v) >= 24 for v in secrets.values())
        banner = up.output()
        sim = f"http://127.0.0.1:{env['PERIODYA_SIM_PORT']}"
        for must in (api, sim, str(secrets_file)):
            assert must in banner, (must, banner)
        commands = re.findall(r"^\s+\$ (.+)$", banner, re.MULTILINE)
        assert len(commands) >= 3, banner
        async with aiohttp.ClientSession() as http, http.get(f"{sim}/_sim/stats") as r:
            assert r.status == 200

        # The printed commands, pasted as they are, in a shell that knows nothing but PATH and HOME.
        shell = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
        await _sh(commands[0], shell)  # create an admin
        login = await _sh(commands[1], shell)  # log in
        assert '"token"' in login, login
        requested = await _sh(commands[2], shell)  # fund, release, request a payout
        payout_id = re.findall(r'"payoutId":\s*"(pay_[^"]+)"', requested)[-1]

        # Jobs from separate CLI processes on the same data dir read the same secrets file and reach
        # up's simulator (no environment beyond the data dir), instead of waiting for the next minute.
        cli_env = {"PATH": os.environ["PATH"], "PERIODYA_DATA_DIR": str(data_dir), "PERIODYA_LOG_LEVEL": "warning",
                   "PERIODYA_SIM_PORT": env["PERIODYA_SIM_PORT"]}
        token = secrets["PERIODYA_SERVICE_TOKEN"]

        async def status() -> str:
            async with aiohttp.ClientSession() as http, http.get(
                    f"{api}/api/payouts/{payout_id}", headers={"Authorization": f"Bearer {token}"}) as r:
                body = await r.json()
                return str(body["status"])

        async def finalized() -> bool:
            for job in ("outbox", "webhooks"):
                run = await spawn(f"run-{job}", ["run", job], cli_env, tmp_path)
                assert await run.wait(60) == 0, run.output()
            return await status() == "FINALIZED"

        await eventually(finalized, "the payout to be FINALIZED", seconds=60, interval=1)
    except BaseException:
        await up.stop()
        raise
    await stopped_cleanly(up, data_dir / "pgdata")

    # The next start reuses the same secrets, and the same admin logs in again.
    before = secrets_file.read_text()
    up, api = await start_up(env, tmp_path)
    try:
        assert secrets_file.read_text() == before
        async with aiohttp.ClientSession() as http, http.post(
                f"{api}/api/auth/login", json={"email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD}) as r:
            assert r.status == 200, await r.text()
    finally:
        await stopped_cleanly(up, data_dir / "pgdata")
