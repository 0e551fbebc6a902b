"""Periodic jobs (runbook section 1). Each is `run(deps, batch) -> Summary`, called the same way by the
HTTP run endpoints, the built-in scheduler and `periodya run JOB`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from periodya.deps import Deps
from periodya.runners import outbox, reconcile, repair, sentinel, webhooks
from periodya.runners.base import Summary

Job = Callable[[Deps, int], Awaitable[Summary]]
JOBS: dict[str, tuple[Job, int]] = {
    "outbox": (outbox.run, outbox.BATCH),
    "webhooks": (webhooks.run, webhooks.BATCH),
    "reconcile-pull": (reconcile.run, reconcile.BATCH),
    "repair": (repair.run, repair.BATCH),
    "sentinel": (sentinel.run, 0),  # also takes mode="recent" | "full"
}
