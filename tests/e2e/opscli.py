"""`periodya ops ...` as a real process, for the e2e tests: its own config dir (XDG_CONFIG_HOME), and a
DATABASE_URL that points nowhere, so a command that touched the database instead of the HTTP API would fail.
`tty=True` gives the process a pseudo-terminal as stdin (to answer a confirmation prompt)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOWHERE_DB = "postgresql://nobody@127.0.0.1:1/nowhere"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class OpsCli:
    config_home: Path
    url: str | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERIODYA_") and k != "DATABASE_URL"}
        env.update({"XDG_CONFIG_HOME": str(self.config_home), "DATABASE_URL": NOWHERE_DB, "PYTHONUNBUFFERED": "1"})
        if self.url:
            env["PERIODYA_OPS_URL"] = self.url
        return env

    async def __call__(self, *args: str, stdin: str | None = None, tty: bool = False,
                       seconds: float = 120.0) -> Result:
        master = slave = -1
        if tty:
            master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "periodya", "ops", *args, env=self.env(),
            stdin=slave if tty else (asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            if tty:
                os.close(slave)
                os.write(master, (stdin or "").encode())
                out, err = await asyncio.wait_for(proc.communicate(), seconds)
            else:
                out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None),
                                                  seconds)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        finally:
            if tty:
                os.close(master)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    async def ok(self, *args: str, **kwargs: Any) -> Result:
        """Run and expect exit 0."""
        result = await self(*args, **kwargs)
        assert result.code == 0, (args, result)
        return result
