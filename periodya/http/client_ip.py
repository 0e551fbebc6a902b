"""The client's address: the TCP peer's, unless the peer is a configured trusted proxy.

Behind a reverse proxy every request comes from the proxy's address, so per-address limits (the login
throttle) would count every client as one. `PERIODYA_TRUSTED_PROXIES` lists the proxies (addresses or
CIDRs, comma-separated) whose `X-Forwarded-For` is believed: the header is read from the right, skipping
trusted proxies, and the first other address is the client. From any other peer the header is ignored,
so a stranger cannot choose the address the throttle counts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from periodya.config import Network

TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)  # parsed by periodya.config.parse_trusted


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address from the peer and the X-Forwarded-For header values (see the module doc)."""
    address = _ip(peer or "")
    if address is None:
        return peer or "unknown"
    if not _trusted(address, trusted):
        return str(address)
    hops = [h for value in forwarded_for for h in value.split(",")]
    for hop in reversed(hops):
        hop_address = _ip(hop)
        if hop_address is None:  # garbage from further left cannot be believed: stop at the last proxy
            return str(address)
        address = hop_address
        if not _trusted(address, trusted):
            return str(address)
    return str(address)


def request_client(request: web.Request) -> str:
    trusted: tuple[Network, ...] = request.app.get(TRUSTED_PROXIES, ())
    forwarded = request.headers.getall("X-Forwarded-For", []) if trusted else []
    return client_address(request.remote, forwarded, trusted)
