"""The audit commands as real processes: `python -m periodya replay | balances | history | export | digest |
verify-export | verify` against the test database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson

from periodya.eventstore import EventStore
from tests.integration.test_audit_export import CLOSED_DAY, insert_day
from tests.integration.test_audit_replay import PROGRAM
from tests.integration.test_ledger_properties import _run


async def periodya(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PERIODYA_LOG_LEVEL": "warning"}
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "periodya", *args], capture_output=True,
                                   text=True, env=env, timeout=180)


async def test_replay_exits_1_naming_exactly_the_altered_row_and_column(database_url: str,
                                                                        pool: asyncpg.Pool) -> None:
    await _run(EventStore(pool), "r-", PROGRAM)
    clean = await periodya(database_url, "replay")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.rstrip().endswith("identical")
    live = await pool.fetchval("SELECT balance FROM balances WHERE account = 'payable:r-p0' AND currency = 'USD'")
    await pool.execute("UPDATE balances SET balance = balance - 5, debits = debits + 5 "
                       "WHERE account = 'payable:r-p0' AND currency = 'USD'")
    dirty = await periodya(database_url, "replay")
    assert dirty.returncode == 1, dirty.stderr
    lines = dirty.stdout.splitlines()
    differing = [line for line in lines if line and not line.startswith(" ") and "differ" in line]
    assert differing == ["balances: 1 row(s) differ (live 9 rows, replayed 9)"], dirty.stdout
    at = lines.index(differing[0])
    assert lines[at + 1:at + 4] == [
        '  row account="payable:r-p0", currency="USD": 2 column(s) differ',
        f"    balance: live {live - 5} | replayed {live}",
        f"    debits: live {await _debits(pool) } | replayed {await _debits(pool) - 5}"]
    assert lines[-1] == "DIFFERENCES FOUND"
    # One projection at a time, and the other tables are identical.
    only_payouts = await periodya(database_url, "replay", "--projection", "payouts")
    assert only_payouts.returncode == 0 and "payouts: identical" in only_payouts.stdout


async def _debits(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT debits FROM balances WHERE account = 'payable:r-p0' AND currency = 'USD'"))


async def test_replay_until_and_balances_as_of(database_url: str, pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    await _run(store, "q-", PROGRAM[:3])
    position = await pool.fetchval("SELECT max(seq) FROM events")
    then = {r["account"]: r["balance"] for r in await pool.fetch("SELECT account, balance FROM balances")}
    await _run(store, "q-", [("fund", 5, 999, "USD")])
    until = await periodya(database_url, "replay", "--until", str(position))
    assert until.returncode == 0, until.stderr
    assert "not diffed" in until.stdout and "\nescrows: 1 rows\n" in until.stdout
    asof = await periodya(database_url, "balances", "--as-of", str(position), "--json")
    assert asof.returncode == 0, asof.stderr
    body = orjson.loads(asof.stdout)
    assert body["position"]["seq"] == position
    assert {r["account"]: r["balance"] for r in body["balances"]} == then
    bad = await periodya(database_url, "balances", "--as-of", "yesterday-ish")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "RFC 3339" in bad.stderr


async def test_history_commands(database_url: str, pool: asyncpg.Pool) -> None:
    await _run(EventStore(pool), "h-", PROGRAM[:4])
    payout = await periodya(database_url, "history", "payout", "h-po0")
    assert payout.returncode == 0, payout.stderr
    assert payout.stdout.startswith("payout h-po0: ") and "PayoutFinalized" in payout.stdout
    account = await periodya(database_url, "history", "account", "payable:h-p0", "--json")
    assert orjson.loads(account.stdout)["entries"][0]["kind"] == "escrow_released"
    missing = await periodya(database_url, "history", "escrow", "nope")
    assert missing.returncode == 1 and "no escrow 'nope'" in missing.stderr


async def test_export_digest_and_verify_export(database_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    await insert_day(pool, CLOSED_DAY)
    day = CLOSED_DAY.isoformat()
    recorded = await periodya(database_url, "digest", "record", "--day", day)
    assert recorded.returncode == 0 and '"status":"recorded"' in recorded.stdout, recorded.stdout
    again = await periodya(database_url, "digest", "record", "--day", day)
    assert again.returncode == 0 and '"status":"already_recorded"' in again.stdout
    export, digest = tmp_path / "day.jsonl", tmp_path / "day.digest.jsonl"
    out = await periodya(database_url, "export", "--from", f"{day}T00:00:00Z", "--to", day_after(day), "--out",
                         str(export))
    assert out.returncode == 0 and "exported 20 events" in out.stderr, out.stderr
    shown = await periodya(database_url, "digest", "show", "--from", day, "--to", day, "--out", str(digest))
    assert shown.returncode == 0
    ok = await periodya(database_url, "verify-export", str(export), "--digest", str(digest))
    assert ok.returncode == 0 and ok.stdout.strip().endswith("ok"), ok.stdout
    against = await periodya(database_url, "verify-export", str(export), "--against-db")
    assert against.returncode == 0, against.stdout
    lines = export.read_bytes().splitlines(keepends=True)
    export.write_bytes(b"".join(lines[:4] + lines[5:]))  # one event removed
    removed = await periodya(database_url, "verify-export", str(export), "--digest", str(digest))
    assert removed.returncode == 1 and "count: expected 20, found 19" in removed.stdout
    against = await periodya(database_url, "verify-export", str(export), "--against-db")
    assert against.returncode == 1 and "count: expected 20, found 19" in against.stdout
    verified = await periodya(database_url, "verify")
    assert verified.returncode == 0 and "daily digests: 1 recorded, 1 match the log" in verified.stdout


def day_after(day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) + timedelta(days=1)).isoformat() + "T00:00:00Z"


async def test_every_audit_command_has_help(database_url: str) -> None:
    for command in (["replay"], ["balances"], ["history"], ["export"], ["digest"], ["digest", "record"],
                    ["digest", "show"], ["verify-export"], ["verify"]):
        result = await periodya(database_url, *command, "--help")
        assert result.returncode == 0 and "usage: periodya" in result.stdout, command
