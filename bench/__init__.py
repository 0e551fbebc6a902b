"""Benchmarks: `python -m bench NAME [options]`, each figure printed next to its floor or peer.

The convention, so that adding one is a single file:

* `bench/<name>.py` is the benchmark `<name>`; modules whose name starts with `_` are helpers.
* The first line of its module docstring is the one-line description `python -m bench --help` lists.
* It defines `main(argv: list[str]) -> int` (argv without the name) and parses its own options.
* It measures against a fresh scratch database (`_common.scratch_database`) on the server that
  `_common.server_url()` picks: DATABASE_URL when set, otherwise the embedded PostgreSQL.
* It reports and never asserts: a missed target prints MISS and still exits 0. Exit 2 only when it
  cannot run at all (a `periodya.errors.ConfigError`, printed as one line by `bench/__main__.py`).
  The exception is `drill`, a test of the whole system more than a measurement: it exits 1 when its
  audit finds anything.

Shared machinery is in ONE module, `bench/_common.py` (imported as `c`): server URL and scratch
databases, the concurrency drivers, child processes and the drill's cron loop, CPU from /proc, targets
(`verdict`), the table printer, cProfile summaries, timing connections. A bench too long to read in
one go keeps its run and options in `bench/<name>.py` and its parts in `bench/_<name>_*.py` (e.g.
`_pipeline_report.py`). Benches use periodya's public names only (no `from periodya.x import _y`).
"""
