"""Typed domain errors. Each carries a stable machine code that the HTTP layer maps to a problem."""

from __future__ import annotations

from periodya.errors import PeriodyaError


class DomainError(PeriodyaError):
    code = "DOMAIN_ERROR"


class ValidationFailed(DomainError):
    code = "VALIDATION_FAILED"


class InvalidState(DomainError):
    """A command that the aggregate's current state does not allow."""

    code = "INVALID_STATE"

    def __init__(self, subject: str, state: str, command: str, why: str = "") -> None:
        detail = f"{subject} is {state}: {command} is not allowed" + (f" ({why})" if why else "")
        super().__init__(detail)
        self.subject, self.state, self.command = subject, state, command


class InsufficientFunds(DomainError):
    code = "INSUFFICIENT_FUNDS"

    def __init__(self, account: str, available: int, requested: int, currency: str) -> None:
        super().__init__(f"{account} has {available} {currency} available, {requested} requested")
        self.account, self.available, self.requested, self.currency = account, available, requested, currency


class OverdraftRefused(DomainError):
    """The database's no_overdraft backstop refused a balance below zero; nothing was written."""

    code = "INSUFFICIENT_FUNDS"


class NotFound(DomainError):
    code = "NOT_FOUND"


class UnbalancedGroup(DomainError):
    """A ledger group whose debits do not equal its credits in some currency. Never written."""

    code = "LEDGER_UNBALANCED"
