"""The pure parts of `periodya ops`: the runbook's checks, money and age display, the session file."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from periodya.opsclient import health, render
from periodya.opsclient.config import ConfigStore, Session, normalize_url
from periodya.opsclient.errors import EXIT_AUTH, EXIT_USAGE, OpsError

CLEAN = {"status": "ok", "payoutOutboxPending": 3, "payoutOutboxSendingStuck": 0, "providerPayoutSentStuck10m": 0,
         "integrityAlertsCriticalOpen": 0, "maxOutboxAgeMinutes": 0.5, "thresholds": {"sendingStuckMinutes": 15},
         "sendingStuck": [], "sentStuck": [], "finalizeMissing": []}


def _states(body: dict[str, Any]) -> dict[str, str]:
    return {c.field: c.state for c in health.checks(body)}


def test_clean_health_is_all_ok_and_names_no_step() -> None:
    ok, report = health.report(CLEAN, None)
    assert ok and set(_states(CLEAN).values()) == {"OK"} and report["todo"] == []
    assert all(c["step"] is None for c in report["checks"])


@pytest.mark.parametrize(("field", "value", "step"), [
    ("payoutOutboxSendingStuck", 1, "periodya ops rerun-outbox"),
    ("providerPayoutSentStuck10m", 2, "periodya ops force-reconcile"),
    ("integrityAlertsCriticalOpen", 1, "LEDGER_UNBALANCED: do not repair"),
    ("maxOutboxAgeMinutes", 16, "payoutOutboxSendingStuck"),
])
def test_each_runbook_field_needs_attention_when_off(field: str, value: Any, step: str) -> None:
    body = {**CLEAN, field: value}
    ok, report = health.report(body, None)
    [check] = [c for c in report["checks"] if c["field"] == field]
    assert not ok and check["state"] == "ATTENTION" and step in check["step"], check
    assert [c["field"] for c in report["checks"] if c["state"] == "ATTENTION"] in (
        [field], ["payoutOutboxPending", field])  # old pending work is the pending row's concern too


def test_todo_names_the_commands_for_each_payout() -> None:
    body = {**CLEAN, "sendingStuck": [{"payoutId": "pay_1", "since": "t"}],
            "sentStuck": [{"payoutId": "pay_2", "providerPayoutId": "po_2", "since": "t"}],
            "finalizeMissing": [{"payoutId": "pay_3", "providerPayoutId": "po_3", "alertId": "al_3", "since": "t"}]}
    todo = health.todo(body)
    assert todo[0].startswith("periodya ops rerun-outbox pay_1")
    assert todo[1].startswith("periodya ops force-reconcile po_2")
    assert todo[2].startswith("periodya ops force-finalize po_3") and "alert ack al_3" in todo[3]


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (4000, "USD", "40.00 USD"), (5, "USD", "0.05 USD"), (1500, "JPY", "1500 JPY"), (1234, "KWD", "1.234 KWD"),
    (-250, "EUR", "-2.50 EUR"), (None, "USD", "-")])
def test_money_in_major_units_with_the_currency_exponent(amount: int | None, currency: str, shown: str) -> None:
    assert render.money(amount, currency) == shown


def test_age_and_cells() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert render.age("2026-01-02T03:01:00Z", now) == "3m05s"
    assert render.age("2026-01-02T01:00:00Z", now) == "2h04m"
    assert render.age("2025-12-30T00:00:00Z", now) == "3d03h"
    assert render.age(None) == "-" and render.cell("a\nb  c") == "a b c" and render.cell(False) == "no"
    assert render.table(["a", "bb"], [(1, "x"), (22, None)]) == "a   bb\n1   x\n22  -"


@pytest.mark.parametrize(("raw", "url"), [("http://Host:8080/", "http://host:8080"),
                                          ("https://ledger.example/prefix/", "https://ledger.example/prefix")])
def test_urls_are_normalized(raw: str, url: str) -> None:
    assert normalize_url(raw) == url


@pytest.mark.parametrize("raw", ["ftp://x", "localhost:8080", "http://", "http://h/?q=1", "", "http://h/#f"])
def test_bad_urls_are_usage_errors(raw: str) -> None:
    with pytest.raises(OpsError) as caught:
        normalize_url(raw)
    assert caught.value.exit_code == EXIT_USAGE


def test_session_file_is_0600_per_url_and_remembers_the_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERIODYA_OPS_URL", raising=False)
    os.umask(0o022)
    store = ConfigStore(tmp_path / "cfg" / "ops-sessions.json")
    with pytest.raises(OpsError) as caught:
        store.resolve_url(None)
    assert caught.value.exit_code == EXIT_USAGE
    store.store(Session("http://a:1", "tok-a", "a@x", None))
    store.store(Session("http://b:2", "tok-b", "b@x", "2030-01-01T00:00:00Z"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.resolve_url(None) == "http://b:2" and store.session("http://a:1").token == "tok-a"
    monkeypatch.setenv("PERIODYA_OPS_URL", "http://a:1/")
    assert store.resolve_url(None) == "http://a:1" and store.resolve_url("http://c:3") == "http://c:3"
    assert store.forget("http://a:1") and not store.forget("http://a:1")
    with pytest.raises(OpsError) as caught:
        store.session("http://a:1")
    assert caught.value.exit_code == EXIT_AUTH
    assert json.loads(store.path.read_text())["sessions"].keys() == {"http://b:2"}
    store.path.write_text("[1]")
    with pytest.raises(OpsError) as caught:
        store.session("http://b:2")
    assert caught.value.exit_code == EXIT_USAGE


def test_ops_user_takes_its_flags_before_or_after_the_action() -> None:
    import argparse

    from periodya.cli import ops as commands

    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers(dest="command"))
    before = parser.parse_args(["ops", "user", "--json", "--url", "http://h", "disable", "b@x.y", "--reason", "r"])
    assert (before.json, before.url, before.user_action, before.email, before.yes) == (
        True, "http://h", "disable", "b@x.y", False)
    after = parser.parse_args(["ops", "user", "role", "b@x.y", "ops_viewer", "--reason", "r", "--yes", "--json"])
    assert (after.json, after.url, after.role, after.yes) == (True, None, "ops_viewer", True)
    unlock = parser.parse_args(["ops", "user", "unlock", "--address", "10.0.0.1", "--reason", "r"])
    assert (unlock.email, unlock.address, unlock.json) == (None, "10.0.0.1", False)
    with pytest.raises(SystemExit):
        parser.parse_args(["ops", "user", "role", "b@x.y", "root", "--reason", "r"])
    with pytest.raises(SystemExit):
        parser.parse_args(["ops", "user", "disable", "b@x.y"])  # --reason is required
