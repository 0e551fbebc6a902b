"""Test-and-drill hooks: pause a process at a named point so a test can SIGKILL it exactly there.

Set PERIODYA_FAULT_PAUSE=<point> and PERIODYA_FAULT_FILE=<path>: when the process reaches <point> it
writes <path> and sleeps until killed. Unset (always, in production), `checkpoint` does nothing.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


async def checkpoint(point: str, detail: str = "") -> None:
    if os.environ.get("PERIODYA_FAULT_PAUSE") != point:
        return
    marker = os.environ.get("PERIODYA_FAULT_FILE")
    if marker:
        await asyncio.to_thread(Path(marker).write_text, detail or point)
    await asyncio.Event().wait()  # until the test kills the process
