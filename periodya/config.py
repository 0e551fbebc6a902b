"""Configuration from the environment (flags may override). Parsing fails with ConfigError, one line."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from periodya.errors import ConfigError

ROOT_DATA_DIR = Path("/var/lib/periodya")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TRUSTED_PROXIES_ENV = "PERIODYA_TRUSTED_PROXIES"


def parse_trusted(raw: str | None) -> tuple[Network, ...]:
    """`10.0.0.1, 10.1.0.0/16, ::1` -> networks; one-line ConfigError on a bad entry (the trusted proxies
    whose X-Forwarded-For periodya/http/client_ip.py believes)."""
    out: list[Network] = []
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{TRUSTED_PROXIES_ENV}: not an address or CIDR: {part[:64]!r}") from None
    return tuple(out)


def _default_data_dir() -> Path:
    """The per-user data dir; as root /var/lib/periodya, a folder the embedded server's own user can reach
    (root's home is 0700 and periodya never widens a folder it did not create)."""
    if os.name == "posix" and os.geteuid() == 0:
        return ROOT_DATA_DIR
    import platformdirs

    return Path(platformdirs.user_data_dir("periodya", appauthor=False))


def _number(env: dict[str, str], name: str, default: float, unit: str, upper: float | None = None) -> float:
    """A positive number of `unit` from the environment (at most `upper`), or `default` when unset."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of {unit}, got {raw!r}") from None
    if upper is None and not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    if upper is not None and not 0 < value <= upper:
        raise ConfigError(f"{name} must be between 0 and {upper:g} {unit}, got {raw!r}")
    return value


def _minutes(env: dict[str, str], name: str, default: float) -> float:
    return _number(env, name, default, "minutes")


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    return _number(env, name, default, "seconds", 3600)


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ConfigError(f"{name} must be a TCP port number, got {raw!r}")
    return int(raw)


def validate_database_url(url: str) -> str:
    """Refuse a DATABASE_URL that is not a postgres URL, before anything tries to connect."""
    try:
        parsed = urlparse(url)
        _ = parsed.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL is malformed: {exc}") from None
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must start with postgresql:// (got a different scheme)")
    if not parsed.hostname and "host=" not in parsed.query:
        raise ConfigError("DATABASE_URL names no host")
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    data_dir: Path
    host: str
    port: int
    service_token: str | None
    cron_secret: str | None
    provider_url: str | None
    provider_api_key: str | None
    webhook_secret: str | None
    sending_stuck_minutes: float
    sent_stuck_minutes: float
    finalize_grace_minutes: float
    log_level: str
    sim_port: int = 8081
    local_sim: bool = False
    """True when the provider is the simulator of `up` on this data dir (its key came from secrets.env)."""
    trusted_proxies: tuple[Any, ...] = ()
    """Networks whose X-Forwarded-For is believed (PERIODYA_TRUSTED_PROXIES; periodya.http.client_ip)."""
    header_timeout: float = 15.0
    """Seconds a client has to send a request's headers, from connecting or from the previous response."""
    body_timeout: float = 30.0
    """Seconds a client has to send a request's body (periodya.http.deadlines)."""
    metrics_token: str | None = None  # GET /metrics requires it as a bearer token when set; open when unset

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        url = env.get("DATABASE_URL") or None
        if url is not None:
            validate_database_url(url)
        provider_url = env.get("PERIODYA_PROVIDER_URL") or None
        webhook_secret = env.get("PERIODYA_WEBHOOK_SECRET") or None
        if provider_url and not webhook_secret:
            raise ConfigError("PERIODYA_WEBHOOK_SECRET is required when PERIODYA_PROVIDER_URL is set")
        return cls(
            database_url=url,
            data_dir=Path(env["PERIODYA_DATA_DIR"]) if env.get("PERIODYA_DATA_DIR") else _default_data_dir(),
            host=env.get("PERIODYA_HOST") or "127.0.0.1",
            port=_port(env, "PERIODYA_PORT", 8080),
            service_token=env.get("PERIODYA_SERVICE_TOKEN") or None,
            cron_secret=env.get("PERIODYA_CRON_SECRET") or None,
            provider_url=provider_url,
            provider_api_key=env.get("PERIODYA_PROVIDER_API_KEY") or None,
            webhook_secret=webhook_secret,
            sending_stuck_minutes=_minutes(env, "PERIODYA_SENDING_STUCK_MINUTES", 15),
            sent_stuck_minutes=_minutes(env, "PERIODYA_SENT_STUCK_MINUTES", 10),
            finalize_grace_minutes=_minutes(env, "PERIODYA_FINALIZE_GRACE_MINUTES", 5),
            log_level=(env.get("PERIODYA_LOG_LEVEL") or "info").lower(),
            sim_port=_port(env, "PERIODYA_SIM_PORT", 8081),
            trusted_proxies=parse_trusted(env.get(TRUSTED_PROXIES_ENV)),
            header_timeout=_seconds(env, "PERIODYA_HEADER_TIMEOUT_SECONDS", 15.0),
            body_timeout=_seconds(env, "PERIODYA_BODY_TIMEOUT_SECONDS", 30.0),
            metrics_token=env.get("PERIODYA_METRICS_TOKEN") or None,
        )

    def with_local_secrets(self) -> Settings:
        """Fill every secret the environment left unset from `<data dir>/secrets.env` (see localsecrets)."""
        from periodya import localsecrets as ls

        found = ls.read(self.data_dir)
        merged = replace(
            self, service_token=self.service_token or found.get(ls.SERVICE_TOKEN),
            cron_secret=self.cron_secret or found.get(ls.CRON_SECRET),
            webhook_secret=self.webhook_secret or found.get(ls.WEBHOOK_SECRET),
            provider_api_key=self.provider_api_key or found.get(ls.PROVIDER_API_KEY))
        return replace(merged, local_sim=self.provider_url is None and ls.PROVIDER_API_KEY in found)

    @property
    def sim_url(self) -> str:
        """Where the simulator of `up` listens (always loopback: /_sim/* has no authentication)."""
        return f"http://127.0.0.1:{self.sim_port}"

    def provider_endpoint(self) -> str | None:
        """The configured provider, else the simulator of `up` on this data dir, else None."""
        return self.provider_url or (self.sim_url if self.local_sim else None)

    def with_overrides(self, **changes: object) -> Settings:
        """Apply command-line flags; a flag left unset (None) keeps the environment's value."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]
