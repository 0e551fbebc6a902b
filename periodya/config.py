"""Configuration from the environment (flags may override). Parsing fails with ConfigError, one line."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from periodya.errors import ConfigError


def _default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("periodya", appauthor=False))


def _minutes(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of minutes, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


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
            metrics_token=env.get("PERIODYA_METRICS_TOKEN") or None,
        )

    def with_overrides(self, **changes: object) -> Settings:
        """Apply command-line flags; a flag left unset (None) keeps the environment's value."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]
