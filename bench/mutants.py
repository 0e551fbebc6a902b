"""Mutation testing (mutmut 3): per module, the share of mutants its tests kill (floor: 90% domain/signing, 80% rest).

Too slow for every CI run, so it is a bench: `python -m bench mutants [MODULE...]` with MODULE one of
the names below (default: all). For each module a scratch copy of the project is made under
--workdir/<module> (periodya/, tests/, schema.sql and pyproject.toml with a [tool.mutmut] section written
for that module: which files to mutate, which tests select it), `mutmut run` runs there (mutmut copies
the copy again to mutants/ and mutates that; the tests it runs find their database through
DATABASE_URL, else the embedded server as in any test run), and the module's killed / survived /
timeout counts and its surviving mutants are printed. `mutmut show NAME` in the module's scratch dir
prints a mutant's diff; `mutmut browse` there is mutmut's own browser.

Tests are selected per module so a run is feasible on 2 cores: the pure domain/ has fast unit tests;
the others run the integration tests that exercise them against a real PostgreSQL and the simulator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Module:
    mutate: tuple[str, ...]
    tests: tuple[str, ...]
    floor: float
    async_db: bool = True
    """Its tests use asyncio and PostgreSQL: each mutant forks from a clean fork server (forking the
    process that ran the async stats pass, with its event loop and sockets, leaves children hanging).
    Pure unit tests fork from the collected process, which is much faster."""


MODULES: dict[str, Module] = {
    "domain": Module(("periodya/domain/*",),
                     ("tests/unit/test_domain_escrow.py", "tests/unit/test_domain_money_ledger.py",
                      "tests/unit/test_domain_payout.py", "tests/unit/test_domain_folding.py",
                      "tests/unit/test_domain_alerts.py", "tests/unit/test_domain_messages.py",
                      "tests/unit/test_domain_settlement.py"), 0.90, async_db=False),
    "signing": Module(("periodya/provider/signing.py",),
                      ("tests/unit/test_provider_signing.py",), 0.90, async_db=False),
    "ops": Module(("periodya/handlers/operator_actions.py",),
                  ("tests/integration/test_ops_safeguards.py", "tests/integration/test_ops.py"), 0.80),
    "scheduler": Module(("periodya/runners/scheduler.py",),
                        ("tests/unit/test_scheduler.py", "tests/integration/test_scheduler_loop.py"), 0.80),
    "idempotency": Module(("periodya/handlers/idempotency.py",),
                          ("tests/integration/test_http_platform.py", "tests/integration/test_payout_batch.py",
                           "tests/integration/test_idempotency*.py"), 0.80),
    "sentinel_checks": Module(("periodya/runners/sentinel_checks.py",),
                              ("tests/integration/test_ops.py", "tests/integration/test_sentinel*.py"), 0.80),
}


def mutmut_config(module: Module) -> str:
    tests = sorted({str(p.relative_to(ROOT)) for t in module.tests for p in ROOT.glob(t)})
    if not tests:
        raise SystemExit(f"no tests select {module.mutate}: mutmut would run the whole suite")
    lines = ["", "[tool.mutmut]", 'source_paths = ["periodya"]', f"only_mutate = {json.dumps(list(module.mutate))}",
             'also_copy = ["schema.sql"]',
             f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
             'pytest_add_cli_args = ["-p", "no:randomly", "-q", "-p", "no:cacheprovider"]']
    if module.async_db:
        lines += ['process_isolation = "forkserver"', 'forkserver_warmup = "none"']
    lines.append("")
    return "\n".join(lines)


def prepare(name: str, module: Module, workdir: Path) -> Path:
    """A fresh scratch copy of the project for one module, with its [tool.mutmut] section."""
    where = workdir / name
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
    for sub in ("periodya", "tests"):
        shutil.copytree(ROOT / sub, where / sub, ignore=ignore)
    shutil.copy2(ROOT / "schema.sql", where / "schema.sql")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if "[tool.mutmut]" in pyproject:
        raise SystemExit("pyproject.toml already has [tool.mutmut]; bench mutants writes its own per module")
    (where / "pyproject.toml").write_text(pyproject + mutmut_config(module), encoding="utf-8")
    return where


def results(where: Path) -> dict[str, str]:
    """mutant name -> status, from `mutmut results --all true`."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=where,
                         capture_output=True, text=True, check=False).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            found[name] = status.strip()
    return found


def run_module(name: str, module: Module, workdir: Path, max_children: int) -> dict[str, object]:
    where = prepare(name, module, workdir)
    started = time.monotonic()
    log = where / "mutmut-run.log"
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)],
                              cwd=where, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.monotonic() - started
    statuses = results(where)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    judged = killed + counts.get("survived", 0) + counts.get("no tests", 0)  # a mutant no test runs survived too
    score = killed / judged if judged else 0.0
    return {"module": name, "exit": proc.returncode, "seconds": round(seconds), "counts": counts,
            "killed": killed, "judged": judged, "score": score, "floor": module.floor,
            "survivors": sorted(n for n, s in statuses.items() if s in ("survived", "no tests")),
            "workdir": str(where)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench mutants", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"which modules (default all): {', '.join(MODULES)}")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "periodya-mutants")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r} (choose from {', '.join(MODULES)})")
    if shutil.which("mutmut") is None and not (Path(sys.executable).parent / "mutmut").exists():
        print("bench mutants: mutmut is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 2
    figures = []
    for name in args.modules or list(MODULES):
        fig = run_module(name, MODULES[name], args.workdir, args.max_children)
        figures.append(fig)
        verdict = "ok" if fig["score"] >= fig["floor"] else "MISS"  # type: ignore[operator]
        print(f"{name:16} killed {fig['killed']}/{fig['judged']} = {fig['score']:.1%} (floor {fig['floor']:.0%}) "
              f"{verdict}  {fig['counts']}  {fig['seconds']} s  [{fig['workdir']}]", flush=True)
        for survivor in fig["survivors"]:  # type: ignore[attr-defined]
            print(f"    survived: {survivor}")
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0
