from __future__ import annotations

from pathlib import Path

import pytest

from periodya.config import Settings
from periodya.errors import ConfigError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.database_url, s.host, s.port, s.sending_stuck_minutes, s.sent_stuck_minutes,
            s.finalize_grace_minutes) == (None, "127.0.0.1", 8080, 15, 10, 5)


def test_fractions_of_minutes_and_overrides() -> None:
    s = Settings.from_env({"PERIODYA_SENT_STUCK_MINUTES": "0.05", "PERIODYA_DATA_DIR": "/tmp/x"})
    assert s.sent_stuck_minutes == 0.05 and s.data_dir == Path("/tmp/x")
    assert s.with_overrides(port=9000, host=None).port == 9000


@pytest.mark.parametrize("env", [
    {"PERIODYA_PORT": "http"},
    {"PERIODYA_SENDING_STUCK_MINUTES": "-1"},
    {"DATABASE_URL": "sqlite:///x"},
    {"PERIODYA_PROVIDER_URL": "http://127.0.0.1:9"},  # without a webhook secret
])
def test_bad_values_are_config_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)
