"""The error boundary (http/boundary.py) behind a real aiohttp server: whatever escapes a handler is ONE
problem+json answer and ONE log line; a traceback only for our own bug, at most once a minute per route;
refusal lines are rate-limited per kind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from periodya.http import boundary
from periodya.http.middleware import request_context


async def our_bug(_request: web.Request) -> web.Response:
    raise KeyError("a bug of ours")


async def client_bytes(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    raise {"recursion": RecursionError("too deep"), "unicode": UnicodeEncodeError("utf-8", "\udcff", 0, 1, "x"),
           "nul": asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00")}[kind]


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    boundary._tracebacks = boundary.Window(1, boundary.TRACEBACK_EVERY)  # a fresh minute for this test
    app = web.Application(middlewares=[request_context])
    app.router.add_get("/bug/{n}", our_bug)
    app.router.add_get("/input/{kind}", client_bytes)
    http = TestClient(TestServer(app))
    await http.start_server()
    yield http
    await http.close()


async def test_our_bug_is_a_500_with_one_traceback_per_minute_per_route(client: TestClient) -> None:
    with structlog.testing.capture_logs() as logs:
        for n in range(5):
            r = await client.get(f"/bug/{n}")
            body = await r.json(content_type=None)
            assert (r.status, r.content_type, body["code"]) == (500, "application/problem+json", "INTERNAL")
            assert body["requestId"] and "KeyError" not in await r.text()
    logs = [line for line in logs if line["log_level"] != "debug"]  # the access line is debug (off by default)
    assert len(logs) == 5  # one line per request
    assert [("exc_info" in line) for line in logs] == [True, False, False, False, False]
    assert all(line["route"] == "/bug/{n}" and line["error"] == "KeyError" for line in logs)
    assert [line.get("traceback") for line in logs[1:]] == ["suppressed"] * 4


@pytest.mark.parametrize("kind", ["recursion", "unicode", "nul"])
async def test_what_only_a_clients_bytes_cause_is_a_400_never_traced(client: TestClient, kind: str) -> None:
    with structlog.testing.capture_logs() as logs:
        r = await client.get(f"/input/{kind}")
        body = await r.json(content_type=None)
    assert (r.status, body["code"]) == (400, "VALIDATION_FAILED")
    shown = [(line["log_level"], "exc_info" in line) for line in logs if line["log_level"] != "debug"]
    assert shown == [("warning", False)]


def test_refusal_lines_are_rate_limited_per_kind_and_say_how_many_were_dropped() -> None:
    now = [0.0]
    window = boundary.Window(2, 60.0, clock=lambda: now[0])
    assert [window.allow("a")[0] for _ in range(4)] == [True, True, False, False]
    assert window.allow("b") == (True, 0)  # another kind has its own budget
    now[0] = 61.0
    assert window.allow("a") == (True, 2)  # the next minute's first line reports the two dropped
    assert window.allow("a") == (True, 0)
