"""`<data dir>/secrets.env` (issue 11, defect 8): generated once with mode 0600, reused, and read by every
command on that data dir for the secrets the environment leaves unset (the environment wins)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from periodya import localsecrets as ls
from periodya.config import Settings


def test_generated_once_private_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    new = ls.ensure(data, ls.KEYS, {})
    assert set(new) == set(ls.KEYS) and len(set(new.values())) == 4
    assert new[ls.WEBHOOK_SECRET].startswith("whsec_") and new[ls.PROVIDER_API_KEY].startswith("sk_sim_")
    assert stat.S_IMODE(os.stat(ls.path(data)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert ls.read(data) == new
    before = ls.path(data).read_text()
    assert ls.ensure(data, ls.KEYS, dict(ls.read(data))) == {}  # nothing missing: nothing written
    assert ls.path(data).read_text() == before


def test_only_missing_keys_are_generated_and_kept(tmp_path: Path) -> None:
    ls.ensure(tmp_path, [ls.SERVICE_TOKEN], {})
    token = ls.read(tmp_path)[ls.SERVICE_TOKEN]
    added = ls.ensure(tmp_path, [ls.SERVICE_TOKEN, ls.CRON_SECRET], {ls.SERVICE_TOKEN: token})
    assert list(added) == [ls.CRON_SECRET]
    assert ls.read(tmp_path) == {ls.SERVICE_TOKEN: token, ls.CRON_SECRET: added[ls.CRON_SECRET]}
    # A secret the environment provides is not written to the file.
    assert ls.ensure(tmp_path, [ls.WEBHOOK_SECRET], {ls.WEBHOOK_SECRET: "from-env"}) == {}
    assert ls.WEBHOOK_SECRET not in ls.read(tmp_path)


def test_commands_read_the_file_and_the_environment_wins(tmp_path: Path) -> None:
    ls.ensure(tmp_path, ls.KEYS, {})
    stored = ls.read(tmp_path)
    plain = Settings.from_env({"PERIODYA_DATA_DIR": str(tmp_path), "PERIODYA_SIM_PORT": "18999"}).with_local_secrets()
    assert plain.service_token == stored[ls.SERVICE_TOKEN] and plain.cron_secret == stored[ls.CRON_SECRET]
    assert plain.provider_endpoint() == "http://127.0.0.1:18999"  # up's simulator on this data dir
    env = Settings.from_env({"PERIODYA_DATA_DIR": str(tmp_path), "PERIODYA_SERVICE_TOKEN": "mine",
                             "PERIODYA_PROVIDER_URL": "https://provider.example", "PERIODYA_WEBHOOK_SECRET": "w"}
                            ).with_local_secrets()
    assert env.service_token == "mine" and env.webhook_secret == "w"
    assert env.provider_endpoint() == "https://provider.example" and not env.local_sim
    empty = Settings.from_env({"PERIODYA_DATA_DIR": str(tmp_path / "none")}).with_local_secrets()
    assert empty.service_token is None and empty.provider_endpoint() is None
