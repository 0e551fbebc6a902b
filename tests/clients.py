"""Type aliases for tests (mypy runs over tests/ too)."""

from __future__ import annotations

from typing import TypeAlias

from aiohttp import web
from aiohttp.test_utils import TestClient

Client: TypeAlias = TestClient[web.Request, web.Application]
