"""The exit codes of `periodya ops` (README, "periodya ops"), and the one error every command raises."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ATTENTION = 1
"""Health needs attention, the API refused the request (4xx), a job run had failed items, or the
operator did not confirm."""
EXIT_USAGE = 2
"""Bad arguments or configuration: no URL, a malformed URL, no terminal to confirm on without --yes."""
EXIT_AUTH = 3
"""Not logged in, session expired or revoked (401), or the account lacks platform_admin (403)."""
EXIT_UNAVAILABLE = 4
"""The deployment could not be reached, did not answer in time, or failed (5xx)."""


class OpsError(Exception):
    """A one-line message for the operator and the exit code a script can rely on."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
