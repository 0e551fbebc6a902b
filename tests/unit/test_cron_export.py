"""`periodya cron export`: each target's output, parsed back, is exactly the scheduler's table."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from croniter import croniter

from periodya.runners.cron_export import RUN_PATH, TARGETS, eventbridge_cron, export
from periodya.runners.scheduler import Entry, schedule

BASE = "https://pay.example.net"
Row = tuple[str, str, int | None, str | None]  # cron, job, batch, mode


def table(entries: list[Entry]) -> list[Row]:
    return sorted((e.cron, e.job, e.batch, e.mode) for e in entries)


def row(cron: str, url: str) -> Row:
    """A scheduler row from a cron expression and the URL (or path) the target calls."""
    parsed = urlparse(url)
    assert parsed.path.startswith(RUN_PATH), url
    if parsed.netloc:
        assert f"{parsed.scheme}://{parsed.netloc}" == BASE, url
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    assert set(query) <= {"batch", "mode"}, url
    batch = int(query["batch"]) if "batch" in query else None
    return cron, parsed.path.removeprefix(RUN_PATH), batch, query.get("mode")


def from_crontab(text: str) -> list[Row]:
    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(maxsplit=5)
        cron, command = " ".join(fields[:5]), shlex.split(fields[5])
        assert croniter.is_valid(cron), line
        assert command[0] == "curl" and command[command.index("-X") + 1] == "POST", line
        assert command[command.index("-H") + 1] == "Authorization: Bearer $PERIODYA_CRON_SECRET", line
        rows.append(row(cron, next(a for a in command if a.startswith(BASE))))
    return sorted(rows)


def from_vercel(text: str) -> list[Row]:
    config = json.loads(text)
    assert config["rewrites"] == [{"source": f"{RUN_PATH}:job", "destination": f"{BASE}{RUN_PATH}:job"}]
    return sorted(row(c["schedule"], c["path"]) for c in config["crons"])


def unix_cron(expression: str) -> str:
    """EventBridge's `cron(m h dom mon dow year)` read back as five fields."""
    fields = re.fullmatch(r"cron\((.*)\)", expression).group(1).split()  # type: ignore[union-attr]
    assert len(fields) == 6 and fields[5] == "*" and "?" in (fields[2], fields[4]), expression
    return " ".join("*" if f == "?" else f.replace("0/", "*/") for f in fields[:5])


def from_eventbridge(text: str) -> list[Row]:
    resources = json.loads(text)["Resources"]
    connection = resources["CronConnection"]["Properties"]["AuthParameters"]["ApiKeyAuthParameters"]
    assert connection == {"ApiKeyName": "Authorization", "ApiKeyValue": {"Fn::Sub": "Bearer ${CronSecret}"}}
    rows = []
    for rule in (r for r in resources.values() if r["Type"] == "AWS::Events::Rule"):
        [target] = rule["Properties"]["Targets"]
        destination = resources[target["Arn"]["Fn::GetAtt"][0]]["Properties"]
        assert destination["HttpMethod"] == "POST"
        assert destination["ConnectionArn"] == {"Fn::GetAtt": ["CronConnection", "Arn"]}
        rows.append(row(unix_cron(rule["Properties"]["ScheduleExpression"]), destination["InvocationEndpoint"]))
    return sorted(rows)


def from_kubernetes(text: str) -> list[Row]:
    rows = []
    for doc in yaml.safe_load_all(text):
        assert (doc["apiVersion"], doc["kind"]) == ("batch/v1", "CronJob")
        spec = doc["spec"]
        assert (spec["concurrencyPolicy"], spec["timeZone"]) == ("Forbid", "Etc/UTC")
        [container] = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        assert args[args.index("-X") + 1] == "POST"
        assert args[args.index("-H") + 1] == "Authorization: Bearer $(PERIODYA_CRON_SECRET)"
        assert container["env"][0]["name"] == "PERIODYA_CRON_SECRET" and "secretKeyRef" in container["env"][0][
            "valueFrom"]
        rows.append(row(spec["schedule"], args[-1]))
    return sorted(rows)


PARSE = {"crontab": from_crontab, "vercel": from_vercel, "eventbridge": from_eventbridge,
         "kubernetes": from_kubernetes}


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_is_the_schedulers_table(target: str) -> None:
    entries = schedule({})
    assert len(entries) == 6  # the runbook's six rows
    assert PARSE[target](export(target, entries, BASE + "/")) == table(entries)


@pytest.mark.parametrize("target", TARGETS)
def test_a_batch_override_reaches_every_target(target: str) -> None:
    entries = schedule({"PERIODYA_BATCH_OUTBOX": "7", "PERIODYA_BATCH_REPAIR": "9"})
    rows = PARSE[target](export(target, entries, BASE))
    assert rows == table(entries)
    assert ("* * * * *", "outbox", 7, None) in rows and ("*/15 * * * *", "repair", 9, None) in rows


def test_eventbridge_cron_has_six_fields_and_a_question_mark() -> None:
    assert eventbridge_cron("*/5 * * * *") == "cron(0/5 * * * ? *)"
    assert eventbridge_cron("0 2 * * *") == "cron(0 2 * * ? *)"
    with pytest.raises(ValueError, match="day-of-week"):
        eventbridge_cron("0 9 * * 1")


def test_the_cli_prints_the_same_and_refuses_a_bad_base_url() -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "periodya", "cron", "export", *args], capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})

    for target in TARGETS:
        done = cli("--target", target, "--base-url", BASE)
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        assert done.stdout == export(target, schedule({}), BASE)
    bad = cli("--target", "crontab", "--base-url", "https://x/'; rm -rf ~")
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert cli("--target", "cloudwatch").returncode == 2
