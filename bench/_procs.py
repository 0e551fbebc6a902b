"""Child processes for the drill: start, SIGKILL, restart, and always stop what was started.

A `Child` is one long-lived process (a `periodya serve`, a cron loop, the simulator) whose command
line and environment are kept, so it can be killed (SIGKILL: exactly a crash, no cleanup) and started
again on the same port. Output goes to a log file per start (never a pipe that could fill up).
`Children` remembers every child and stops them all (SIGTERM, then SIGKILL) on the way out, whatever
happened: an exception, Ctrl-C, or SIGTERM to the drill (which cancels its main task, as Ctrl-C does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


@dataclass
class Child:
    """One restartable child process. `ready` is a URL that answers 200 once the child serves."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_dir: Path
    ready: str | None = None
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, *, seconds: float = 60.0) -> None:
        self.starts += 1
        log = self.log_dir / f"{self.name}.{self.starts}.log"
        self.logs.append(log)
        with log.open("wb") as out:  # the child keeps its own descriptor
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=dict(self.env), stdout=out, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True)  # Ctrl-C reaches the drill only
        if self.ready is not None:
            await self._await_ready(seconds)

    async def _await_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if not self.running:
                    raise RuntimeError(f"{self.name} exited with {self.returncode()}: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.ready or "") as r:
                        if r.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready at {self.ready} after {seconds:.0f} s: {self.tail()}")
                await asyncio.sleep(0.05)

    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    def tail(self, lines: int = 15) -> str:
        if not self.logs:
            return ""
        try:
            return "\n".join(self.logs[-1].read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    async def kill(self) -> None:
        """SIGKILL and reap: a crash at whatever the child was doing."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self, seconds: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in `seconds`."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), seconds)
        except TimeoutError:
            await self.kill()


class Children:
    """Every child the drill started, stopped in reverse order by `stop_all` (idempotent)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.all: list[Child] = []

    def periodya(self, name: str, args: Sequence[str], env: Mapping[str, str], *, ready: str | None = None) -> Child:
        return self.python(name, ["-m", "periodya", *args], env, ready=ready)

    def python(self, name: str, args: Sequence[str], env: Mapping[str, str], *, ready: str | None = None) -> Child:
        child = Child(name, [sys.executable, *args], env, self.log_dir, ready)
        self.all.append(child)
        return child

    async def stop_all(self) -> None:
        for child in reversed(self.all):
            await child.stop()


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any PERIODYA_* or DATABASE_URL of its own, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERIODYA_") and k != "DATABASE_URL"}
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    return env
