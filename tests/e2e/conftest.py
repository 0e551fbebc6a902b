"""Fixtures shared by the e2e tier."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.procs import start_sim


@pytest.fixture(scope="module")
async def sim_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """One simulator process per test module; each test resets it and points its webhooks at its server."""
    proc, url = await start_sim(tmp_path_factory.mktemp("sim"))
    try:
        yield url
    finally:
        await proc.stop()
