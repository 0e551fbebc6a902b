"""The ledger property tests with many more examples: random programs checked against an independent model.

`python -m bench properties [--examples N]` runs tests/integration/test_ledger_properties.py with
PERIODYA_PROPERTY_EXAMPLES=N (the suite's default is 12) against DATABASE_URL (else the embedded server,
as any test run), and prints how many examples ran, the commands they ran, how many of those succeeded
(moved money or changed a payout) and how many were refused as the model predicted. Exit status is
pytest's: a property that failed prints hypothesis's smallest failing program.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/integration/test_ledger_properties.py"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench properties", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="hypothesis examples (default 200)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.jsonl"
        env = {**os.environ, "PERIODYA_PROPERTY_EXAMPLES": str(args.examples), "PERIODYA_PROPERTY_STATS": str(stats)}
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:randomly",
                               "-k", "random_programs", "--hypothesis-show-statistics"], cwd=ROOT, env=env,
                              check=False)
        seconds = time.monotonic() - started
        rows = [json.loads(line) for line in stats.read_text().splitlines()] if stats.exists() else []
    commands = sum(r["commands"] for r in rows)
    refused = sum(r["refused"] for r in rows)
    print(f"examples {len(rows)} (asked {args.examples}), commands {commands}, succeeded {commands - refused}, "
          f"refused as predicted {refused}, per example: {commands / max(1, len(rows)):.1f} commands, "
          f"{(commands - refused) / max(1, len(rows)):.1f} succeeded; {seconds:.0f} s; pytest exit {proc.returncode}")
    return proc.returncode
