"""What a sentinel check examines (Scope) and what it answers (Result): the types every check shares,
in their own module so a check written elsewhere (runners/webhook_check.py) needs no import of the
sentinel's list of checks, which imports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Scope:
    """What a run examines: everything (full) or the streams written since the last checkpoint (recent)."""

    full: bool
    streams: list[str] = field(default_factory=list)

    @property
    def groups(self) -> list[str]:
        return [s[len("ledger-"):] for s in self.streams if s.startswith("ledger-")]


@dataclass
class Result:
    code: str
    severity: str
    findings: dict[str, dict[str, Any]]
    complete: bool
    examined: int
    checked: frozenset[str] = frozenset()
    """Subjects examined by an incomplete check: their open alerts absent from `findings` are cleared."""

    def cleared(self, subject: str) -> bool:
        """Whether this run checked `subject`'s condition and found it gone."""
        return subject not in self.findings and (self.complete or subject in self.checked)
