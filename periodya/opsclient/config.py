"""Where `periodya ops` keeps its sessions: one JSON file in the per-user config dir (platformdirs), mode 0600.

    {"lastUrl": "https://ledger.example", "sessions": {"https://ledger.example": {"token": ..., "email": ...,
     "expiresAt": ...}}}

One session per deployment URL. The token is a bearer secret: the file is created 0600 (in a 0700
directory), written whole to a temporary file and renamed over the old one, and the token is never printed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from yarl import URL

from periodya.opsclient.errors import EXIT_AUTH, EXIT_USAGE, OpsError

URL_ENV = "PERIODYA_OPS_URL"
FILE_NAME = "ops-sessions.json"


def config_path() -> Path:
    return Path(platformdirs.user_config_dir("periodya")) / FILE_NAME


def normalize_url(raw: str) -> str:
    """The deployment's base URL as the sessions are keyed: scheme and host lower-cased, no trailing slash."""
    try:
        url = URL(raw.strip())
    except (ValueError, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise OpsError(EXIT_USAGE, f"not a base URL: {raw!r} (expected http(s)://host[:port][/prefix])")
    return str(url.with_path(url.path.rstrip("/"))).rstrip("/")


@dataclass(frozen=True)
class Session:
    url: str
    token: str
    email: str
    expires_at: str | None


class ConfigStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_path()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"sessions": {}}
        except (OSError, ValueError) as exc:
            raise OpsError(EXIT_USAGE, f"cannot read {self.path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("sessions"), dict):
            raise OpsError(EXIT_USAGE, f"{self.path} is not a periodya ops session file; remove it and log in")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=2, sort_keys=True)
            os.chmod(tmp, 0o600)  # whatever the umask
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def resolve_url(self, given: str | None) -> str:
        """--url, else $PERIODYA_OPS_URL, else the last URL used."""
        raw = given or os.environ.get(URL_ENV) or self._load().get("lastUrl")
        if not raw:
            raise OpsError(EXIT_USAGE, f"no deployment URL: pass --url, set {URL_ENV}, or run periodya ops login")
        return normalize_url(str(raw))

    def session(self, url: str) -> Session:
        entry = self._load()["sessions"].get(url)
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            raise OpsError(EXIT_AUTH, f"not logged in to {url}: run periodya ops login --url {url}")
        return Session(url, entry["token"], str(entry.get("email", "")), entry.get("expiresAt"))

    def store(self, session: Session) -> None:
        data = self._load()
        data["sessions"][session.url] = {"token": session.token, "email": session.email,
                                         "expiresAt": session.expires_at}
        data["lastUrl"] = session.url
        self._save(data)

    def forget(self, url: str) -> bool:
        data = self._load()
        had = data["sessions"].pop(url, None) is not None
        self._save(data)
        return had
