"""The HTTP side of `periodya ops`: the public API only, never the database, so it works the same against
`periodya up` on this machine and a remote deployment. Every failure becomes one OpsError line."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp

from periodya.opsclient.errors import EXIT_ATTENTION, EXIT_AUTH, EXIT_UNAVAILABLE, OpsError

EXPIRED = "session expired: run periodya ops login"
DEFAULT_TIMEOUT = 30.0


class ApiClient:
    """One deployment, one optional bearer token. Use as `async with ApiClient(url, token) as api`."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def get(self, path: str, params: Mapping[str, str | None] | None = None) -> Any:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any = None, params: Mapping[str, str | None] | None = None) -> Any:
        return await self.call("POST", path, body=body, params=params)

    async def call(self, method: str, path: str, *, body: Any = None,
                   params: Mapping[str, str | None] | None = None) -> Any:
        """The answer's JSON (None for 204); an OpsError for anything else, with the request id to quote."""
        assert self._http is not None, "use ApiClient as an async context manager"
        request_id = f"ops-{uuid.uuid4().hex[:16]}"
        headers = {"X-Request-Id": request_id, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            async with self._http.request(method, self.url + path, params=query, headers=headers,
                                          json=body) as response:
                text = await response.text(errors="replace")
                status, content_type = response.status, response.content_type
        except aiohttp.ClientConnectorError as exc:
            raise OpsError(EXIT_UNAVAILABLE, f"cannot reach {self.url}: {_reason(exc)}") from None
        except TimeoutError:
            raise OpsError(EXIT_UNAVAILABLE, f"no answer from {self.url} within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise OpsError(EXIT_UNAVAILABLE, f"cannot talk to {self.url}: {type(exc).__name__}: {exc}") from None
        if status == 204:
            return None
        data = _json(text) if "json" in content_type else None
        if 200 <= status < 300 and data is not None:
            return data
        raise _problem(status, data, text, request_id)


def _reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused"
    return (getattr(os_error, "strerror", None) or str(os_error) or type(exc).__name__).lower()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _problem(status: int, data: Any, text: str, request_id: str) -> OpsError:
    body = data if isinstance(data, dict) else {}
    detail = str(body.get("detail") or text.strip()[:200] or "no detail")
    code = body.get("code") or "HTTP_ERROR"
    rid = body.get("requestId") or request_id
    if status == 401:
        return OpsError(EXIT_AUTH, EXPIRED)
    if status == 403:
        return OpsError(EXIT_AUTH, f"forbidden: {detail}")
    if 200 <= status < 300:
        return OpsError(EXIT_UNAVAILABLE, f"unexpected answer ({status}, not JSON; request id {rid})")
    if status >= 500:
        return OpsError(EXIT_UNAVAILABLE, f"server error {status} {code}: {detail} (request id {rid})")
    return OpsError(EXIT_ATTENTION, f"refused: {status} {code}: {detail} (request id {rid})")
