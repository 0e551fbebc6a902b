"""What every job shares: its summary and the per-item unit of work. Its dependencies (Deps, the clock)
are periodya/deps.py's, imported here for the jobs that take them from this module."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from periodya.deps import Deps
from periodya.domain.errors import DomainError
from periodya.errors import ConcurrencyConflict
from periodya.handlers.unit_of_work import Meta, UnitOfWork, run_command
from periodya.logging import get_logger

log = get_logger("periodya.runners")


@dataclass
class Summary:
    job: str
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    details: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def count(self, outcome: str) -> None:
        self.details[outcome] = self.details.get(outcome, 0) + 1

    def record(self, outcome: str | None, *, ok: Collection[str], neutral: Collection[str] = (),
               skip: Collection[str] = ()) -> None:
        """Count one item's outcome. None (another run holds it) and `skip` outcomes are skipped;
        `ok` ones succeeded; `neutral` ones were processed but neither (e.g. a retry scheduled);
        anything else failed. An outcome's word before ':' is its kind ('ignored: why')."""
        kind = outcome.split(":")[0] if outcome is not None else None
        if kind is None or kind in skip:
            self.skipped += 1
            return
        self.processed += 1
        self.count(kind)
        if kind in ok:
            self.succeeded += 1
        elif kind not in neutral:
            self.failed += 1

    def as_json(self) -> dict[str, Any]:
        return {"job": self.job, "processed": self.processed, "succeeded": self.succeeded, "failed": self.failed,
                "skipped": self.skipped, "durationMs": round((time.perf_counter() - self.started) * 1000, 1),
                "outcomes": dict(sorted(self.details.items()))}


Item = Callable[[UnitOfWork], Awaitable[str | None]]


async def claim_and_run(deps: Deps, job: str, lock_names: list[str], body: Item) -> str | None:
    """Run `body` for one item in its own transaction, but only if no overlapping run holds the item's
    lock right now (then return None: someone else is handling it). `body` returns an outcome word."""
    meta = Meta(actor=f"runner:{job}")

    async def guarded(uow: UnitOfWork) -> str | None:
        if not await uow.try_lock(lock_names):
            return None
        return await body(uow)

    try:
        return await run_command(deps.store, meta, guarded, attempts=2)
    except (DomainError, ConcurrencyConflict) as exc:
        log.info("item_not_applicable", job=job, item=lock_names[0], reason=str(exc))
        return "not_applicable"
