"""The HTTP edge below the middlewares: what aiohttp answers itself, and the headers of every answer.

aiohttp's protocol refuses a request it cannot parse (a request line or header over its limit, too many
headers, a malformed message) before any middleware runs: `RequestHandler.handle_error` answers with
text/plain and logs a full traceback. `EdgeRunner` (an AppRunner) serves the app through
`ProblemRequestHandler`, whose `handle_error` answers problem+json instead (414 for a request line
over the limit, 431 for a header over it or too many headers, 400 otherwise; the connection is closed
as aiohttp does) and leaves ONE rate-limited warning line (boundary.refused), never a traceback.

`secure_headers` (an on_response_prepare signal) gives every answer of the app `Server: periodya`,
`X-Content-Type-Options: nosniff` and, under /api/, `Cache-Control: no-store` (the login answer
carries a bearer token; admin answers carry operational data). `ProblemRequestHandler` sets the same.
"""

from __future__ import annotations

import uuid

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from periodya.http import boundary
from periodya.http.problems import problem

SERVER = "periodya"
NOSNIFF = {"X-Content-Type-Options": "nosniff"}


def _status(exc: BaseException | None) -> tuple[int, str, str]:
    """(status, code, title) for what the parser refused."""
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""  # the first 100 bytes of what was too long
        head = line.encode("latin-1", "replace") if isinstance(line, str) else bytes(line)
        if head.startswith((b"/", b"*", b"http:", b"https:")):
            return 414, "URI_TOO_LONG", "URI too long"  # the request target: a path, a URL or *
        return 431, "HEADERS_TOO_LARGE", "Request header fields too large"
    if isinstance(exc, HttpProcessingError) and "Too many headers" in str(exc.message):
        return 431, "HEADERS_TOO_LARGE", "Request header fields too large"
    return 400, "BAD_REQUEST", "Bad request"


class ProblemRequestHandler(RequestHandler):
    """aiohttp's protocol with its own error answers made problem+json (see the module docstring)."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: an answer has started, the connection is broken
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        request_id = uuid.uuid4().hex
        if isinstance(exc, HttpProcessingError) or status < 500:
            status, code, title = _status(exc)
            boundary.refused("http_parser", status=status, error=type(exc).__name__, remote=request.remote,
                             requestId=request_id)
            response = problem(status, code, title, "the request could not be read: "
                               f"{title.lower() if status != 400 else 'malformed HTTP'}", requestId=request_id)
        else:  # a failure below the app's error boundary (it catches every handler's exception)
            boundary.unhandled(exc or RuntimeError("handle_error"), request.method, "protocol")  # logged only
            response = problem(status, "INTERNAL", "Internal error", "an internal error occurred; quote the request id",
                               requestId=request_id)
        response.headers.update({"Server": SERVER, **NOSNIFF, "X-Request-Id": request_id})
        response.force_close()
        return response


class ProblemServer(web.Server):
    """A web.Server whose connections use ProblemRequestHandler."""

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """web.AppRunner serving through ProblemServer: use it wherever the app is served."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = ProblemServer  # the app built it (handler, request factory, handler_args); only
        return server  # the protocol factory changes


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the headers every answer carries (see the module docstring)."""
    response.headers["Server"] = SERVER
    response.headers.update(NOSNIFF)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


def install(app: web.Application) -> None:
    app.on_response_prepare.append(secure_headers)
