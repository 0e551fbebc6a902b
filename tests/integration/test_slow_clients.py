"""Slow clients (issue 13, finding 4): a client trickling its headers or its body, or idling on a kept-alive
connection, is disconnected by the server once the configured limit passes. A real server
(`service.http_site`, as `serve` and `up` run it) and raw sockets; the limits are set short here and the
test asserts that the SERVER closes the connection, never how fast it did so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from periodya.cli.service import http_site
from periodya.config import Settings
from tests.conftest import CRON_SECRET, SERVICE_TOKEN

DRIP = 0.2  # seconds between the slow client's bytes
GIVE_UP = 60.0  # the test client's own limit: reaching it means the server never closed


@pytest.fixture
async def server(database_url: str, pool: asyncpg.Pool) -> AsyncIterator[tuple[str, int]]:
    settings = Settings.from_env({
        "DATABASE_URL": database_url, "PERIODYA_SERVICE_TOKEN": SERVICE_TOKEN, "PERIODYA_CRON_SECRET": CRON_SECRET,
        "PERIODYA_HOST": "127.0.0.1", "PERIODYA_PORT": "0", "PERIODYA_HEADER_TIMEOUT_SECONDS": "1",
        "PERIODYA_BODY_TIMEOUT_SECONDS": "1"})
    async with http_site(settings, pool) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        yield host, int(port)


async def drip_until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: list[bytes]
                            ) -> bytes:
    """Send `chunks` one every DRIP seconds; return everything the server sent once it closed the
    connection (EOF or reset). Fails if the server still holds the connection after GIVE_UP seconds."""
    received = b""

    async def read_all() -> None:
        nonlocal received
        while chunk := await reader.read(65536):
            received += chunk

    reading = asyncio.create_task(read_all())
    try:
        async with asyncio.timeout(GIVE_UP):
            for chunk in chunks:
                if reading.done():
                    break
                try:
                    writer.write(chunk)
                    await writer.drain()
                except ConnectionError:
                    break
                await asyncio.sleep(DRIP)
            try:
                await reading
            except ConnectionError:
                pass
    except TimeoutError:
        pytest.fail(f"the server kept a slow connection open for {GIVE_UP} s; received {received[:200]!r}")
    finally:
        reading.cancel()
        writer.close()
    return received


async def test_trickled_headers_are_cut_off(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    start = [b"GET /livez HTTP/1.1\r\n", b"Host: x\r\n", b"X-Slow: "]
    endless = [b"a"] * (int(GIVE_UP / DRIP) + 10)  # one header line, a byte at a time, never ending
    received = await drip_until_closed(reader, writer, start + endless)
    assert received == b""  # closed without an answer: the request never completed


async def test_a_trickled_body_is_answered_408_and_cut_off(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    head = (b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n{\"email\": \"")
    received = await drip_until_closed(reader, writer, [head] + [b"a"] * (int(GIVE_UP / DRIP) + 10))
    assert received.startswith(b"HTTP/1.1 408"), received[:300]
    assert b"application/problem+json" in received and b"REQUEST_TIMEOUT" in received


async def test_an_idle_kept_alive_connection_is_closed(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    request = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    received = await drip_until_closed(reader, writer, [request])  # then nothing at all
    assert received.startswith(b"HTTP/1.1 200") and received.count(b"HTTP/1.1") == 1


async def test_a_slow_but_steady_client_within_the_limits_is_served(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(GIVE_UP):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")


def test_limits_are_configured_in_seconds() -> None:
    from periodya.errors import ConfigError

    settings = Settings.from_env({})
    assert (settings.header_timeout, settings.body_timeout) == (15.0, 30.0)
    with pytest.raises(ConfigError, match="PERIODYA_BODY_TIMEOUT_SECONDS"):
        Settings.from_env({"PERIODYA_BODY_TIMEOUT_SECONDS": "0"})
