"""The sentinel check WEBHOOK_SIGNATURES_FAILING: webhooks keep being refused for their signature.

One refusal is noise (a stranger, a retry of an old delivery); refusals in at least PERSIST_MINUTES
distinct minutes of the last WINDOW_MINUTES mean the provider's deliveries are failing (a rotated or
wrong PERIODYA_WEBHOOK_SECRET, a clock off by minutes) or someone keeps forging them. The check examines
the whole condition each run, so its alert resolves itself once the refusals stop.
"""

from __future__ import annotations

import asyncpg

from periodya.deps import Deps
from periodya.domain.alerts import WARNING
from periodya.handlers.webhook_refusals import refused_since
from periodya.runners.check_result import Result, Scope

CODE = "WEBHOOK_SIGNATURES_FAILING"
SUBJECT = "provider-webhooks"
WINDOW_MINUTES = 15
PERSIST_MINUTES = 3
REMEDY = ("Provider webhooks keep failing their signature check (details.lastReason): compare "
          "PERIODYA_WEBHOOK_SECRET with the provider's signing secret (during a rotation list both, comma-"
          "separated), check the server clock (timestamp_too_old / timestamp_in_future), and read the API log's "
          "`refused` lines (kind webhook_signature) for the remote addresses. Until fixed, payouts settle through "
          "reconcile-pull. Resolves itself once refusals stop.")


async def webhook_signatures_failing(deps: Deps, conn: asyncpg.Connection, scope: Scope) -> Result:
    refused, minutes, reason = await refused_since(conn, deps.minutes_ago(WINDOW_MINUTES))
    findings = {SUBJECT: {"refusedLast15m": refused, "minutesWithRefusals": minutes, "lastReason": reason}
                } if minutes >= PERSIST_MINUTES else {}
    return Result(CODE, WARNING, findings, True, minutes)
