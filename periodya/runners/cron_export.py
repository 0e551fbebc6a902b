"""The built-in scheduler's table (scheduler.schedule()) written for an external scheduler.

Every target is rendered from the same `Entry` list the scheduler runs, so a batch size set with
PERIODYA_BATCH_<JOB> or a job added to the table shows up everywhere at once. Each entry calls its run
endpoint with the cron secret; `endpoint(entry)` is the one place that says which path and query.

* crontab: one line per entry, curl POST with `Authorization: Bearer $PERIODYA_CRON_SECRET`.
* vercel: vercel.json `crons` (Vercel Cron calls the path with GET and `Authorization: Bearer
  $CRON_SECRET`; the run endpoints accept GET with the cron secret only) and a rewrite that proxies the
  run paths to the service.
* eventbridge: a CloudFormation template: one connection holding the bearer header, one API destination
  per entry, one scheduled rule per entry targeting it. (EventBridge Scheduler schedules cannot call an
  HTTP endpoint themselves; scheduled rules with API destinations can.)
* kubernetes: one CronJob per entry running curl, the secret from a Secret, concurrencyPolicy Forbid
  (as the built-in scheduler, a run still going is not stacked), timeZone Etc/UTC.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlparse

from periodya.runners.scheduler import Entry

TARGETS = ("crontab", "vercel", "eventbridge", "kubernetes")
RUN_PATH = "/api/admin/ops/run/"
CURL_TIMEOUT_S = 300


def endpoint(entry: Entry) -> str:
    """The run endpoint's path and query for one entry: `?batch=N` or, for the sentinel, `?mode=M`."""
    query = {"mode": entry.mode} if entry.mode else {"batch": str(entry.batch)} if entry.batch else {}
    return RUN_PATH + entry.job + (f"?{urlencode(query)}" if query else "")


def name(entry: Entry) -> str:
    return "periodya-" + entry.job + (f"-{entry.mode}" if entry.mode else "")


def crontab(entries: list[Entry], base_url: str) -> str:
    lines = ["# periodya: the runbook's cron table, from `periodya cron export --target crontab`. Times are UTC.",
             "# Put PERIODYA_CRON_SECRET=<the service's cron secret> in this crontab's environment (a line above",
             "# the entries, or the cron daemon's). CRON_TZ is honoured by cronie; elsewhere run cron in UTC.",
             "CRON_TZ=UTC"]
    auth = '-H "Authorization: Bearer $PERIODYA_CRON_SECRET"'
    for e in entries:
        lines.append(f"{e.cron} curl -fsS -m {CURL_TIMEOUT_S} -X POST {auth} '{base_url}{endpoint(e)}' >/dev/null")
    return "\n".join(lines) + "\n"


def vercel(entries: list[Entry], base_url: str) -> str:
    config = {"crons": [{"path": endpoint(e), "schedule": e.cron} for e in entries],
              "rewrites": [{"source": RUN_PATH + ":job", "destination": base_url + RUN_PATH + ":job"}]}
    return json.dumps(config, indent=2) + "\n"


def eventbridge_cron(cron: str) -> str:
    """`m h dom mon dow` as EventBridge's six-field `cron(m h dom mon dow year)`: one of day-of-month and
    day-of-week must be `?`, and a step is written from its start (`0/5`, not `*/5`)."""
    minute, hour, dom, month, dow = cron.split()
    if dow != "*":
        raise ValueError(f"day-of-week schedules are numbered differently in EventBridge; map {cron!r} by hand")
    fields = [f.replace("*/", "0/") for f in (minute, hour, dom, month)]
    return f"cron({' '.join(fields)} ? *)"


def eventbridge(entries: list[Entry], base_url: str) -> str:
    resources: dict[str, Any] = {
        "CronConnection": {"Type": "AWS::Events::Connection", "Properties": {
            "AuthorizationType": "API_KEY",
            "AuthParameters": {"ApiKeyAuthParameters": {
                "ApiKeyName": "Authorization", "ApiKeyValue": {"Fn::Sub": "Bearer ${CronSecret}"}}}}},
        "InvokeRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "invoke-periodya-run-endpoints", "PolicyDocument": {
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "events:InvokeApiDestination",
                                                        "Resource": "*"}]}}]}},
    }
    for e in entries:
        key = "".join(part.capitalize() for part in name(e).replace("-", " ").split())
        resources[f"{key}Destination"] = {"Type": "AWS::Events::ApiDestination", "Properties": {
            "ConnectionArn": {"Fn::GetAtt": ["CronConnection", "Arn"]}, "HttpMethod": "POST",
            "InvocationEndpoint": base_url + endpoint(e), "InvocationRateLimitPerSecond": 1}}
        resources[f"{key}Schedule"] = {"Type": "AWS::Events::Rule", "Properties": {
            "Name": name(e), "ScheduleExpression": eventbridge_cron(e.cron), "State": "ENABLED",
            "Targets": [{"Id": name(e), "Arn": {"Fn::GetAtt": [f"{key}Destination", "Arn"]},
                         "RoleArn": {"Fn::GetAtt": ["InvokeRole", "Arn"]}}]}}
    template = {"AWSTemplateFormatVersion": "2010-09-09",
                "Description": "periodya: the runbook's cron table as EventBridge scheduled rules (UTC)",
                "Parameters": {"CronSecret": {"Type": "String", "NoEcho": True,
                                              "Description": "the service's PERIODYA_CRON_SECRET"}},
                "Resources": resources}
    return json.dumps(template, indent=2) + "\n"


def cronjob(entry: Entry, base_url: str) -> dict[str, Any]:
    container = {"name": "run", "image": "curlimages/curl:8.10.1",
                 "args": ["-fsS", "-m", str(CURL_TIMEOUT_S), "-X", "POST", "-H",
                          "Authorization: Bearer $(PERIODYA_CRON_SECRET)", base_url + endpoint(entry)],
                 "env": [{"name": "PERIODYA_CRON_SECRET",
                          "valueFrom": {"secretKeyRef": {"name": "periodya-cron", "key": "cron-secret"}}}]}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name(entry)},
            "spec": {"schedule": entry.cron, "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid",
                     "startingDeadlineSeconds": 60, "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                         "restartPolicy": "Never", "containers": [container]}}}}}}


def kubernetes(entries: list[Entry], base_url: str) -> str:
    header = ("# periodya: the runbook's cron table as CronJobs, from `periodya cron export --target kubernetes`.\n"
              "# The cron secret: kubectl create secret generic periodya-cron --from-literal=cron-secret=...\n")
    return header + "".join("---\n" + _yaml(cronjob(e, base_url)) for e in entries)


def _yaml(value: Any, indent: int = 0) -> str:
    """Block YAML for dicts, lists and JSON scalars (a JSON scalar is a valid YAML scalar)."""
    pad = "  " * indent
    if isinstance(value, dict):
        out = ""
        for k, v in value.items():
            nested = isinstance(v, dict | list) and v
            out += f"{pad}{k}:\n{_yaml(v, indent + 1)}" if nested else f"{pad}{k}: {json.dumps(v)}\n"
        return out
    if isinstance(value, list):
        out = ""
        for item in value:
            body = _yaml(item, indent + 1) if isinstance(item, dict | list) else f"{pad}  {json.dumps(item)}\n"
            out += f"{pad}- {body.lstrip()}"
        return out
    return f"{pad}{json.dumps(value)}\n"


RENDER = {"crontab": crontab, "vercel": vercel, "eventbridge": eventbridge, "kubernetes": kubernetes}


def check_base_url(base_url: str) -> str:
    """An http(s) URL with a host and nothing a shell line or a manifest would have to quote."""
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment \
            or any(ch in base_url for ch in " '\"\\$`\n\t%"):
        raise ValueError(f"--base-url must be a plain http(s) URL (https://periodya.example.com), got {base_url!r}")
    return base_url.rstrip("/")


def export(target: str, entries: list[Entry], base_url: str) -> str:
    if target not in RENDER:
        raise ValueError(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")
    return RENDER[target](entries, check_base_url(base_url))
