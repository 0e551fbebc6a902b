"""`StripePayoutsClient`: the payout provider port over HTTP, in the Stripe payouts wire format.

One aiohttp ClientSession per client, reused for every request; each request has its own timeout.
Redirects are never followed (a redirected POST would silently become a GET). Every failure is
mapped to a `ProviderError` subclass; see `periodya.provider.port` for what each means for money.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote, urlencode

import aiohttp

from periodya import metrics, tracing
from periodya.logging import get_logger
from periodya.provider.port import (
    PAYOUT_STATUSES,
    PayoutStatus,
    ProviderAuthFailed,
    ProviderIdempotencyMismatch,
    ProviderNotFound,
    ProviderPayout,
    ProviderRejected,
    ProviderUnavailable,
)

log = get_logger("periodya.provider")
_TRANSIENT_4XX = {409, 429}  # Stripe: 409 = the same idempotency key is in flight; 429 = rate limited
MAX_PAGE = 100


def payout_from_wire(obj: Any) -> ProviderPayout:
    """A `ProviderPayout` from a Stripe payout object; anything unreadable is `ProviderUnavailable`."""
    try:
        status = obj["status"]
        if status not in PAYOUT_STATUSES:
            raise ValueError(f"unknown payout status {status!r}")
        metadata = obj.get("metadata") or {}
        amount = obj["amount"]
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise ValueError("amount is not an integer")
        return ProviderPayout(
            id=str(obj["id"]), amount=amount, currency=str(obj["currency"]).upper(),
            destination=str(obj.get("destination") or ""), status=cast(PayoutStatus, status),
            payout_id=metadata.get("payout_id"), failure_code=obj.get("failure_code"),
            failure_message=obj.get("failure_message"), created=obj.get("created"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProviderUnavailable(f"provider sent a malformed payout object: {exc}") from None


class StripePayoutsClient:
    """The `PayoutProvider` port against a Stripe-compatible API (Stripe itself or `periodya provider-sim`).

    Use as `async with StripePayoutsClient(url, key) as client: ...` or call `close()` when done.
    The API key is sent as a bearer token and never logged.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0,
                 connect_timeout: float = 5.0, session: aiohttp.ClientSession | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> StripePayoutsClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def create_payout(self, payout_id: str, amount: int, currency: str, destination: str) -> ProviderPayout:
        form = {"amount": str(amount), "currency": currency.lower(), "destination": destination,
                "metadata[payout_id]": payout_id}
        body = await self._request("POST", "/v1/payouts", "create_payout", form=form, idempotency_key=payout_id)
        payout = payout_from_wire(body)
        log.info("provider_payout_created", payout_id=payout_id, provider_payout_id=payout.id)
        return payout

    async def retrieve_payout(self, provider_payout_id: str) -> ProviderPayout:
        body = await self._request("GET", f"/v1/payouts/{quote(provider_payout_id, safe='')}", "retrieve_payout")
        return payout_from_wire(body)

    async def list_payouts(self, limit: int = MAX_PAGE, starting_after: str | None = None,
                           ) -> tuple[list[ProviderPayout], bool]:
        params = {"limit": str(max(1, min(limit, MAX_PAGE)))}
        if starting_after is not None:
            params["starting_after"] = starting_after
        body = await self._request("GET", "/v1/payouts", "list_payouts", params=params)
        try:
            data, has_more = body["data"], body["has_more"]
            if not isinstance(data, list) or not isinstance(has_more, bool):
                raise TypeError("data must be a list and has_more a boolean")
        except (KeyError, TypeError) as exc:
            raise ProviderUnavailable(f"provider sent a malformed list object: {exc}") from None
        return [payout_from_wire(item) for item in data], has_more

    async def find_by_payout_id(self, payout_id: str) -> ProviderPayout | None:
        starting_after: str | None = None
        while True:
            page, has_more = await self.list_payouts(MAX_PAGE, starting_after)
            for payout in page:
                if payout.payout_id == payout_id:
                    return payout
            if not has_more or not page:
                return None
            starting_after = page[-1].id

    async def _request(self, method: str, path: str, operation: str, *, form: Mapping[str, str] | None = None,
                       params: Mapping[str, str] | None = None, idempotency_key: str | None = None) -> Any:
        """One provider call, counted and timed by `operation` (periodya_provider_requests_total)."""
        about = {"periodya.payout_id": idempotency_key} if idempotency_key else {}  # the key is the payout id
        with metrics.provider_call(operation), tracing.span(f"provider {operation}", about):
            return await self._send(method, path, form=form, params=params, idempotency_key=idempotency_key)

    async def _send(self, method: str, path: str, *, form: Mapping[str, str] | None,
                    params: Mapping[str, str] | None, idempotency_key: str | None) -> Any:
        headers = dict(self._headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        data = None
        if form is not None:  # encoded here: aiohttp's FormData for a dict does the same with more steps
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            data = urlencode(form).encode()
        where = f"{method} {path}"
        try:
            async with self._session_now().request(
                method, self._base_url + path, data=data, params=params, headers=headers,
                timeout=self._timeout, allow_redirects=False,
            ) as response:
                status = response.status
                text = (await response.read()).decode("utf-8", errors="replace")
        except (TimeoutError, aiohttp.ClientError) as exc:
            # ServerDisconnectedError (closed without a response), refused connections, timeouts,
            # truncated bodies: for a create, the payout may exist.
            log.warning("provider_unavailable", request=where, error=type(exc).__name__)
            raise ProviderUnavailable(f"{where}: {type(exc).__name__}: {exc or 'no response'}") from exc
        return _answer(where, status, text)


def _answer(where: str, status: int, text: str) -> Any:
    """The parsed JSON body of a 2xx answer; every other answer raised as the matching ProviderError."""
    body = _json_or_none(text)
    if 200 <= status < 300:
        if body is None:
            raise ProviderUnavailable(f"{where}: {status} with an unreadable body")
        return body
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or text[:200] or f"HTTP {status}")
    code, error_type = error.get("code"), error.get("type")
    if status in (401, 403):
        raise ProviderAuthFailed(f"{where}: {status}: {message}")
    if status == 404:
        raise ProviderNotFound(f"{where}: {message}")
    if status == 400 and error_type == "idempotency_error":
        raise ProviderIdempotencyMismatch(f"{where}: {message}")
    if 400 <= status < 500 and status not in _TRANSIENT_4XX:
        raise ProviderRejected(status, error_type, code, message, error.get("param"))
    raise ProviderUnavailable(f"{where}: {status}: {message}")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
