"""The shipped Prometheus rules and Grafana dashboard use only names GET /metrics serves, and the rules
cover the runbook's health pulse; promtool checks and unit-tests the rules when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "periodya-rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "periodya-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "periodya.json"
NAME = re.compile(r"\b(periodya_[a-z0-9_]+)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


async def served_names(api: TestClient) -> set[str]:
    """Every series name the exposition declares (a labelled family with no sample yet still counts)."""
    response = await api.get("/metrics")
    assert response.status == 200
    names = set()
    for family in text_string_to_metric_families(await response.text()):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]


async def test_every_name_the_rules_and_dashboard_use_is_served(api: TestClient) -> None:
    served = await served_names(api)
    used = {name for rule in rules() for name in NAME.findall(rule["expr"])}
    used_by_dashboard = {name for expr in dashboard_exprs() for name in NAME.findall(expr)}
    assert used and used_by_dashboard
    assert used - served == set()
    assert used_by_dashboard - served == set()


def test_one_rule_per_runbook_expectation() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in rules()}
    assert len(exprs) == len(rules()), "alert names are unique"
    # runbook section 2: the three "Expected 0" fields, and "should not continuously climb"
    for gauge in ("periodya_outbox_sending_stuck", "periodya_payouts_sent_stuck", "periodya_alerts_critical_open"):
        [rule] = [a for a, e in exprs.items() if re.search(rf"\b{gauge}\b\)? > 0", e)]
        assert rule
    assert any("deriv(" in e and "periodya_outbox_pending" in e for e in exprs.values())
    # section 3's symptoms
    assert any("periodya_outbox_max_age_seconds) > 900" in e for e in exprs.values())  # maxOutboxAgeMinutes > 15
    for code in ("FINALIZE_MISSING", "LEDGER_UNBALANCED"):
        assert any(f'code="{code}"' in e for e in exprs.values()), code
    for rule in rules():
        assert "severity" in rule.get("labels", {}) or "by (severity)" in rule["expr"], rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:  # CI installs it (.ci/run); the name checks above run everywhere
        import pytest

        pytest.skip("promtool is not installed (apt-get install prometheus)")
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULES_TEST)]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
