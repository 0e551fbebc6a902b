"""Bad configuration is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "periodya", *args], capture_output=True, text=True,
                          env=full_env, timeout=60)


@pytest.mark.parametrize(("url", "fragment"), [
    ("not a url", "DATABASE_URL"),
    ("mysql://root@localhost/x", "postgresql://"),
    ("postgresql://u@localhost:99999/x", "malformed"),
    ("postgresql://postgres@127.0.0.1:1/x", "unreachable"),
])
def test_bad_database_url(url: str, fragment: str) -> None:
    result = run_cli("migrate", env={"DATABASE_URL": url})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def test_a_reader_that_went_away_is_a_quiet_exit_not_a_traceback() -> None:
    """`periodya ... | head`: the pipe's reader is gone before the command writes (here closed before it
    starts): exit 141 (128 + SIGPIPE) and nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "periodya", "cron", "export", "--target", "crontab"],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert result.stderr == ""


def test_bad_threshold() -> None:
    result = run_cli("migrate", env={"PERIODYA_SENT_STUCK_MINUTES": "soon"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "periodya: error: PERIODYA_SENT_STUCK_MINUTES must be a number of minutes, got 'soon'"]


async def test_missing_schema_then_migrate_twice(server_url: str) -> None:
    import asyncpg

    from tests.conftest import with_database

    empty = f"cli_empty_{uuid.uuid4().hex[:12]}"  # unique: other sessions may share the server
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {empty}")
    try:
        url = with_database(server_url, empty)
        missing = run_cli("verify", env={"DATABASE_URL": url})
        assert missing.returncode == 2 and "Traceback" not in missing.stderr
        assert "run `periodya migrate` first" in missing.stderr
        for _ in range(2):
            migrated = run_cli("migrate", env={"DATABASE_URL": url})
            assert migrated.returncode == 0, migrated.stderr
        verified = run_cli("verify", env={"DATABASE_URL": url})
        assert verified.returncode == 0 and "ok" in verified.stdout
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {empty} WITH (FORCE)")
        await admin.close()
