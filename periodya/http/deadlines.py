"""Time limits on what a client sends, so a slow client cannot hold a connection open (slowloris).

* Headers and idle keep-alive: aiohttp's `keepalive_timeout` (set by `service.http_site` to
  PERIODYA_HEADER_TIMEOUT_SECONDS) starts when a connection opens and again after every response, and
  closes the connection if a complete request line and headers have not arrived by then. Bytes trickling
  in do not restart it.
* Body: this middleware reads the whole body (at most the app's 256 KiB) within
  PERIODYA_BODY_TIMEOUT_SECONDS before any handler runs; a body that does not arrive in time is answered
  408 REQUEST_TIMEOUT and the connection is closed. Handlers then read the buffered body.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from periodya.http.middleware import REQUEST_ID, Handler
from periodya.http.problems import problem
from periodya.logging import get_logger

BODY_TIMEOUT = web.AppKey("body_timeout_seconds", float)
log = get_logger("periodya.http")


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.body_exists and request.can_read_body:
        seconds = request.app.get(BODY_TIMEOUT, 30.0)
        try:
            async with asyncio.timeout(seconds):
                await request.read()
        except TimeoutError:
            log.warning("request_body_timeout", method=request.method, path=request.path, remote=request.remote,
                        seconds=seconds)
            response = problem(408, "REQUEST_TIMEOUT", "Request timeout",
                               f"the request body did not arrive within {seconds:g} s",
                               requestId=request.get(REQUEST_ID))
            response.force_close()
            return response
    return await handler(request)
