"""`python -m bench NAME [options]` runs bench/NAME.py; with no name or `--help` it lists the benchmarks."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

from periodya.errors import PeriodyaError

PACKAGE_DIR = Path(__file__).resolve().parent


def available() -> dict[str, str]:
    """Benchmark name -> first docstring line, read without importing (a broken one still lists)."""
    found: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules([str(PACKAGE_DIR)]), key=lambda m: m.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        source = (PACKAGE_DIR / f"{info.name}.py").read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
        found[info.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return found


def usage() -> str:
    benches = available()
    width = max((len(n) for n in benches), default=0)
    lines = ["usage: python -m bench NAME [options]   (python -m bench NAME --help for its options)", "",
             "benchmarks:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, summary in benches.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    benches = available()
    if name not in benches:
        print(f"bench: error: unknown benchmark {name!r} (available: {', '.join(benches) or 'none'})",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    try:
        return int(module.main(rest))
    except PeriodyaError as exc:
        print(f"bench {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
