"""The HTTP edge of a real `periodya serve` process and its real log (issue 11 defects 4 and 6, issue 13
items 1, 2, 7): what aiohttp's parser refuses is problem+json with one warning line; hostile requests
write a bounded number of log bytes; refused credentials and webhook signatures leave one rate-limited
line each, never the token, secret or signature.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from periodya.http.boundary import REFUSALS_PER_MINUTE
from periodya.provider.signing import sign
from tests.conftest import CRON_SECRET, SERVICE_TOKEN
from tests.e2e.procs import PROBLEM, WEBHOOK_SECRET, System, running_system


@asynccontextmanager
async def system_at_info(database_url: str, tmp_path: Path) -> AsyncIterator[System]:
    """A simulator and a server logging at info, the shipped level."""
    async with running_system(database_url, tmp_path, env={"PERIODYA_LOG_LEVEL": "info"}) as system:
        yield system


async def send(system: System, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = system.api.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
    except ConnectionError:
        pass  # the server may answer and close before it read an oversized request whole
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def request(method: str, path: str, *, auth: bytes | None = None, body: bytes = b"", extra: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n".encode()
    if auth is not None:
        head += b"Authorization: Bearer " + auth + b"\r\n"
    return head + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def log_size(system: System) -> int:
    return system.server.log.stat().st_size


async def new_log(system: System, since: int) -> str:
    await asyncio.sleep(0.2)  # the server writes its line before it answers; let the file catch up anyway
    with system.server.log.open("rb") as f:
        f.seek(since)
        return f.read().decode(errors="replace")


def refusals(text: str, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "refused" and line.get("kind") == kind]


OVERSIZED = {
    "request line": (request("GET", "/api/payees/" + "x" * 10_000 + "/balances", auth=SERVICE_TOKEN.encode()),
                     414, "URI_TOO_LONG"),
    "header": (request("GET", "/api/payees/p1/balances", extra=b"X-Big: " + b"y" * 10_000 + b"\r\n"),
               431, "HEADERS_TOO_LARGE"),
    "header count": (request("GET", "/livez", extra=b"".join(b"X-H%d: 1\r\n" % n for n in range(200))),
                     431, "HEADERS_TOO_LARGE"),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 400, "BAD_REQUEST"),
}


async def test_what_the_parser_refuses_is_problem_json_and_one_warning_line(database_url: str,
                                                                          tmp_path: Path) -> None:
    async with system_at_info(database_url, tmp_path) as system:
        for name, (raw, status, code) in OVERSIZED.items():
            before = log_size(system)
            got, headers, body = await send(system, raw)
            assert got == status, (name, got, body[:200])
            assert headers["content-type"].startswith(PROBLEM), (name, headers)
            problem = json.loads(body)
            assert (problem["status"], problem["code"]) == (status, code) and problem["requestId"], problem
            assert headers["server"] == "periodya" and headers["x-content-type-options"] == "nosniff"
            text = await new_log(system, before)
            assert "Traceback" not in text and len(text.splitlines()) == 1, (name, text[:2000])
            [line] = refusals(text, "http_parser")
            assert line["level"] == "warning" and line["status"] == status and line["remote"] == "127.0.0.1", line
        assert (await system.health())["status"] == "ok"  # and the server still answers


async def test_hostile_requests_write_a_bounded_log(database_url: str, tmp_path: Path) -> None:
    """Issue 13.1/13.2: deep JSON (unauthenticated) and non-UTF-8 bearer bytes were 500s with ~100 KB and
    ~1 KB of traceback per request; now 4xx, at most one short line each, and none once rate-limited."""
    deep = b"[" * 800 + b"]" * 800
    cases = [(request("POST", "/api/auth/login", body=b'{"email":' + deep + b',"password":"x"}'), 400),
             (request("POST", "/api/escrows", auth=SERVICE_TOKEN.encode(), body=b'{"escrowId":' + deep + b"}"), 400),
             (request("GET", "/api/payees/p1/balances", auth=b"\xff\xfe"), 401),
             (request("GET", "/api/admin/ops/health", auth=b"\xff\xfe"), 401)]
    async with system_at_info(database_url, tmp_path) as system:
        for raw, status in cases:
            before = log_size(system)
            for _ in range(20):
                assert (await send(system, raw))[0] == status
            text = await new_log(system, before)
            assert "Traceback" not in text and "exception" not in text, text[:2000]
            assert len(text) <= 20 * 400, (len(text), text[:2000])


async def test_refused_credentials_leave_one_rate_limited_line_never_the_token(database_url: str,
                                                                             tmp_path: Path) -> None:
    wrong = b"wrong-token-0123456789"
    async with system_at_info(database_url, tmp_path) as system:
        before = log_size(system)
        for kind, raw in (("service_token", request("GET", "/api/payees/p1/balances", auth=wrong)),
                          ("session", request("GET", "/api/admin/ops/health", auth=wrong)),
                          ("cron_secret_or_session", request("POST", "/api/admin/ops/run/outbox", auth=wrong))):
            for _ in range(REFUSALS_PER_MINUTE + 20):  # a flood: at most REFUSALS_PER_MINUTE lines a minute
                assert (await send(system, raw))[0] == 401
            text = await new_log(system, before)
            lines = refusals(text, kind)
            assert len(lines) == REFUSALS_PER_MINUTE, (kind, len(lines))
            assert lines[0]["reason"] and lines[0]["remote"] == "127.0.0.1" and lines[0]["route"], lines[0]
        text = await new_log(system, before)
        assert wrong.decode() not in text and SERVICE_TOKEN not in text and CRON_SECRET not in text
        # the right credentials still work and log no refusal
        assert (await send(system, request("GET", "/api/payees/p1/balances", auth=SERVICE_TOKEN.encode())))[0] == 200


async def test_a_refused_webhook_signature_is_logged_and_counted(database_url: str, tmp_path: Path) -> None:
    body = json.dumps({"id": "evt_forged_1", "type": "payout.paid", "data": {"object": {}}}).encode()
    forged = sign(body, "whsec_not_the_secret", int(time.time()))
    stale = sign(body, WEBHOOK_SECRET, int(time.time()) - 3600)
    async with system_at_info(database_url, tmp_path) as system:
        before = log_size(system)
        for header in (forged, stale):
            status, headers, answer = await send(system, request("POST", "/api/webhooks/provider", body=body,
                                                                 extra=f"Stripe-Signature: {header}\r\n".encode()))
            assert status == 400 and headers["content-type"].startswith(PROBLEM), answer
        text = await new_log(system, before)
        lines = refusals(text, "webhook_signature")
        assert [line["reason"] for line in lines] == ["no_matching_signature", "timestamp_too_old"], text
        assert all(line["providerEventId"] == "evt_forged_1" and line["remote"] == "127.0.0.1" for line in lines)
        for secret in (forged.split("v1=")[1], stale.split("v1=")[1], WEBHOOK_SECRET):
            assert secret not in text
        assert (await system.health())["webhooksRefused"] == 2

