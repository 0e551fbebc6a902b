"""`periodya ops` run in this process (`periodya.cli.main`, in a thread with its own event loop) against
the real app on a loopback port and a real database. tests/e2e/test_ops_cli.py runs the same commands as
processes, which coverage cannot see; here every command's request, answer and exit code is measured too:
login, whoami, users, user role/disable/enable/unlock (confirmed with --yes), payouts, payout, health,
jobs, alerts, and the refusals (409 guard rail -> exit 1, unknown user -> exit 1, no session -> exit 3)."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from periodya import cli
from periodya.domain import escrow, payout
from periodya.eventstore import EventStore
from periodya.handlers import platform
from periodya.handlers.unit_of_work import Meta, run_command
from periodya.http.app import create_app
from tests.integration.test_admin_auth import PASSWORD, make_user

A, B = "alice@example.com", "bob@example.com"


@pytest.fixture
async def api(settings: Any, pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # the ops session file lives here
    monkeypatch.delenv("PERIODYA_OPS_URL", raising=False)
    server = TestServer(create_app(settings, pool), host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def ops(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """`periodya ops ARGV...` -> (exit code, stdout, stderr)."""
    capsys.readouterr()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = await asyncio.to_thread(cli.main, ["ops", *argv])
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_ops_commands_against_the_real_app(api: str, pool: asyncpg.Pool,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    await make_user(pool, A)
    await make_user(pool, B)
    store = EventStore(pool)
    meta = Meta(actor="test")
    await run_command(store, meta, lambda u: platform.fund_escrow(u, escrow.FundEscrow("e-ops", 10_000, "USD")))
    await run_command(store, meta, lambda u: platform.release_escrow(
        u, escrow.ReleaseEscrow("e-ops", "payee-ops", 9_000, 100)))
    await run_command(store, meta, partial(platform.request_payout, cmd=payout.RequestPayout(
        "po-ops", "payee-ops", 5_000, "USD", "ba_ops")))

    code, _, err = await ops(capsys, "whoami", "--url", api)
    assert code == 3 and "periodya ops login" in err, err  # no session yet
    code, out, err = await ops(capsys, "login", "--url", api, "--email", A, "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0 and A in out, (out, err)
    code, out, _ = await ops(capsys, "whoami")
    assert code == 0 and A in out

    code, out, _ = await ops(capsys, "users")
    assert code == 0 and A in out and B in out and "platform_admin" in out
    code, out, err = await ops(capsys, "user", "role", B, "ops_viewer", "--reason", "read only", "--yes")
    assert code == 0 and "ops_viewer" in out, (out, err)
    code, out, err = await ops(capsys, "user", "disable", A, "--reason", "self", "--yes")
    assert code == 1 and "SELF_CHANGE_REFUSED" in err, (out, err)
    code, out, err = await ops(capsys, "user", "disable", B, "--reason", "left", "--yes")
    assert code == 0 and "DISABLED" in out, (out, err)
    code, out, err = await ops(capsys, "user", "enable", B, "--reason", "back", "--yes")
    assert code == 0 and "active" in out, (out, err)
    code, out, err = await ops(capsys, "user", "unlock", B, "--reason", "ticket", "--yes")
    assert code == 0 and "cleared 0" in out, (out, err)
    code, out, err = await ops(capsys, "user", "disable", "nobody@example.com", "--reason", "x", "--yes")
    assert code == 1 and "no admin user with email nobody@example.com" in err, (out, err)
    assert await pool.fetchval("SELECT roles FROM admin_users WHERE email = $1", B) == ["ops_viewer"]

    code, out, _ = await ops(capsys, "payouts")
    assert code == 0 and "po-ops" in out and "50.00 USD" in out
    code, out, _ = await ops(capsys, "payout", "po-ops")
    assert code == 0 and "PayoutRequested" in out and "payee-ops" in out
    code, out, _ = await ops(capsys, "health")
    assert "payoutOutboxPending" in out and code in (0, 1)  # 1: the never-run jobs are overdue
    code, out, _ = await ops(capsys, "jobs")
    assert code == 0 and "outbox" in out
    code, out, _ = await ops(capsys, "alerts")
    assert code == 0
    code, out, _ = await ops(capsys, "logout")
    assert code == 0
    code, _, err = await ops(capsys, "whoami")
    assert code == 3, err
