"""`python -m bench`: lists the benchmarks, refuses an unknown name in one line. No database needed."""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _common

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def test_help_lists_every_benchmark_with_its_summary() -> None:
    result = run_bench("--help")
    assert result.returncode == 0
    assert "usage: python -m bench NAME" in result.stdout
    assert re.search(r"^  append +Append throughput", result.stdout, re.MULTILINE)
    assert "_common" not in result.stdout  # helpers are not benchmarks


def test_no_name_lists_too() -> None:
    assert "append" in run_bench().stdout


def test_unknown_name_is_one_line_and_non_zero() -> None:
    result = run_bench("no-such-bench")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown benchmark 'no-such-bench'" in result.stderr
    assert "Traceback" not in result.stderr


def test_fixed_count_driver_runs_exactly_count_operations() -> None:
    calls: list[int] = []
    result = _common.drive_threads(calls.append, 3, count=25)
    assert result.ops == 25 == len(calls)
    assert set(calls) <= {0, 1, 2}
    assert result.p50_ms <= result.p99_ms


def test_driver_reports_the_operations_own_error() -> None:
    async def failing(worker: int) -> None:
        raise ValueError(f"worker {worker} failed")

    with pytest.raises(ValueError, match="failed"):
        asyncio.run(_common.drive_async(failing, 4, count=10))


@pytest.mark.parametrize(("text", "ok"), [("1,8,32", [1, 8, 32]), ("4", [4]), ("0", None), ("a,b", None)])
def test_concurrency_list(text: str, ok: list[int] | None) -> None:
    if ok is None:
        with pytest.raises(argparse.ArgumentTypeError):
            _common.concurrency_list(text)
    else:
        assert _common.concurrency_list(text) == ok
