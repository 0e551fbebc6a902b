"""Integrity alerts as decide/evolve. An alert's identity is (code, subject): while one is open
(OPEN or ACKNOWLEDGED) it is not raised again; once resolved, the same condition raises a new one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from periodya.domain.decision import Decision
from periodya.domain.errors import InvalidState
from periodya.domain.events import AlertAcknowledged, AlertRaised, AlertResolved, Event

OPEN, ACKNOWLEDGED, RESOLVED = "OPEN", "ACKNOWLEDGED", "RESOLVED"
CRITICAL, WARNING = "critical", "warning"
NEVER_AUTO_RESOLVED = frozenset({"LEDGER_UNBALANCED", "HASH_CHAIN_BROKEN", "DIGEST_MISMATCH"})


def stream(code: str, subject: str) -> str:
    return "alert-" + hashlib.sha256(f"{code}|{subject}".encode()).hexdigest()[:32]


def alert_id(code: str, subject: str, cycle: int) -> str:
    return "al_" + hashlib.sha256(f"{code}|{subject}|{cycle}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class AlertState:
    code: str
    subject: str
    cycle: int
    alert_id: str
    status: str
    version: int

    @property
    def is_open(self) -> bool:
        return self.status in (OPEN, ACKNOWLEDGED)


def evolve(state: AlertState | None, event: Event) -> AlertState | None:
    version = (state.version if state else 0) + 1
    if isinstance(event, AlertRaised):
        return AlertState(event.code, event.subject, (state.cycle if state else 0) + 1, event.alert_id, OPEN, version)
    assert state is not None
    if isinstance(event, AlertAcknowledged):
        return replace(state, status=ACKNOWLEDGED, version=version)
    if isinstance(event, AlertResolved):
        return replace(state, status=RESOLVED, version=version)
    return replace(state, version=version)


def decide_raise(state: AlertState | None, code: str, severity: str, subject: str, details: dict[str, Any],
                 remedy: str) -> Decision:
    if state is not None and state.is_open:
        return Decision()
    cycle = (state.cycle if state else 0) + 1
    return Decision((AlertRaised(alert_id=alert_id(code, subject, cycle), code=code, severity=severity,
                                 subject=subject, details=details, remedy=remedy),))


def decide_ack(state: AlertState | None, by: str, note: str | None) -> Decision:
    if state is None:
        raise InvalidState("alert", "absent", "acknowledge")
    if state.status != OPEN:
        return Decision()  # acknowledged already, or resolved: nothing to acknowledge
    return Decision((AlertAcknowledged(alert_id=state.alert_id, by=by, note=note),))


def decide_resolve(state: AlertState | None, by: str, note: str | None, *, automatic: bool = False) -> Decision:
    if state is None:
        raise InvalidState("alert", "absent", "resolve")
    if not state.is_open:
        return Decision()
    if automatic and state.code in NEVER_AUTO_RESOLVED:
        raise InvalidState(f"alert {state.alert_id}", state.status, "auto-resolve", f"{state.code} waits for a human")
    return Decision((AlertResolved(alert_id=state.alert_id, by=by, note=note, automatic=automatic),))
