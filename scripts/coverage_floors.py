"""Check branch coverage per package against floors: `python scripts/coverage_floors.py PKG=PCT ...`.

Reads the data `coverage run` left (.coverage), prints each package's figure (statements and branches
together, as `coverage report` counts them) next to its floor, and exits 1 if any package is below its
floor. `*=PCT` is the floor of a package not named (a new one, until it gets its own). Called by
.ci/run, which holds the floors.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

import coverage


def package_figures() -> dict[str, float]:
    cov = coverage.Coverage()
    cov.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        cov.json_report(outfile=str(out))
        files = json.loads(out.read_text())["files"]
    hit: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for path, data in files.items():
        parts = PurePosixPath(path.replace("\\", "/")).parts
        if "periodya" not in parts:
            continue
        package = "/".join(parts[parts.index("periodya"):-1])
        summary = data["summary"]
        hit[package] += summary["covered_lines"] + summary.get("covered_branches", 0)
        total[package] += summary["num_statements"] + summary.get("num_branches", 0)
    return {p: 100.0 * hit[p] / total[p] for p in sorted(total) if total[p]}


def main(argv: list[str]) -> int:
    floors = {k: float(v) for k, _, v in (a.partition("=") for a in argv)}
    figures = package_figures()
    failed = False
    for package, pct in figures.items():
        floor = floors.get(package, floors.get("*", 100.0))
        verdict = "ok" if pct >= floor else "BELOW FLOOR"
        failed |= verdict != "ok"
        print(f"coverage {package:22} {pct:6.2f}%  floor {floor:5.1f}  {verdict}")
    for package in sorted(set(floors) - set(figures) - {"*"}):
        print(f"coverage {package:22} not measured (floor {floors[package]})")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
