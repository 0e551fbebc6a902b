"""The embedded PostgreSQL's handles (periodya/embedded.py): which live processes use the server of a data
dir, kept in `<data dir>/pg-handles.json` under an flock on `<data dir>/.embedded.lock`.

A handle is (pid, process start time): a handle whose process is gone, or whose PID now belongs to another
process, is stale and pruned, never trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

HANDLES = "pg-handles.json"
LOCK = ".embedded.lock"


def started_at(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def live(handles: list[dict[str, float]]) -> list[dict[str, float]]:
    """The handles whose process still runs (same PID AND same start time: a reused PID is not ours)."""
    out = []
    for h in handles:
        started = started_at(int(h["pid"]))
        if started is not None and abs(started - float(h["started"])) < 0.01:
            out.append(h)
    return out


def read_handles(path: Path) -> list[dict[str, float]]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [h for h in data if isinstance(h, dict) and isinstance(h.get("pid"), int)
            and isinstance(h.get("started"), int | float)]


def write_handles(path: Path, handles: list[dict[str, float]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(handles))
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(data_dir: Path) -> Iterator[None]:
    fd = os.open(data_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock
