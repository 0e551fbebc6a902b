"""What `periodya up` prints once everything listens: where things are and a newcomer's next commands.

Every command is a real, copy-pasteable bash line (`$ ` in front): create an admin, log in, then fund an
escrow, release it to a payee and request a payout. The platform calls read the service token from the
secrets file in a subshell, so no secret is printed and none is left in the user's shell.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from periodya.config import Settings

EXAMPLE_EMAIL = "admin@example.com"
EXAMPLE_PASSWORD = "change-me-to-a-long-passphrase"


def periodya_command() -> str:
    """How this very `periodya` was started, as an absolute command (the venv's script or `python -m`)."""
    script = Path(sys.argv[0])
    if script.name == "periodya" and script.exists():
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(sys.executable)} -m periodya"


def _json(text: str) -> str:
    return shlex.quote(text)


def banner(settings: Settings, api: str, secrets_file: Path, *, database: str) -> str:
    q = shlex.quote
    env = f"set -a; . {q(str(secrets_file))}; set +a"
    auth = '-H "Authorization: Bearer $PERIODYA_SERVICE_TOKEN"'
    ctype = "-H 'Content-Type: application/json'"
    where = "" if settings.database_url else f" --data-dir {q(str(settings.data_dir))}"
    create = (f"printf '%s\\n' {q(EXAMPLE_PASSWORD)} | {periodya_command()}{where} admin create-user "
              f"{EXAMPLE_EMAIL} --password-stdin")
    login = (f"curl -s -X POST {api}/api/auth/login {ctype} -d "
             + _json(f'{{"email": "{EXAMPLE_EMAIL}", "password": "{EXAMPLE_PASSWORD}"}}') + "; echo")
    payout = (
        f"({env}; E=esc_$(date +%s%N); "
        f"curl -s -X POST {api}/api/escrows {auth} {ctype} "
        "-d '{\"escrowId\": \"'$E'\", \"amount\": 10000, \"currency\": \"USD\"}' && echo && "
        f"curl -s -X POST {api}/api/escrows/$E/release {auth} {ctype} "
        "-d '{\"payeeId\": \"payee_1\", \"amount\": 9000, \"feeAmount\": 1000}' && echo && "
        f"curl -s -X POST {api}/api/payouts {auth} {ctype} -H \"Idempotency-Key: $E\" "
        "-d '{\"payeeId\": \"payee_1\", \"amount\": 9000, \"currency\": \"USD\", \"destination\": \"ba_payee_1\"}'"
        "; echo)")
    watch = f"({env}; curl -s {api}/api/payouts/PAYOUT_ID {auth}; echo)"
    sim = settings.provider_url or "(configured provider)"
    lines = [
        f"periodya up: API {api} (database: {database})",
        f"  provider simulator  {sim}" if settings.local_sim or settings.provider_url == settings.sim_url
        else f"  provider            {sim}",
        f"  secrets             {secrets_file} (mode 0600; environment variables override it)",
        "  jobs                the runbook's cron table runs here (outbox and webhooks every minute)",
        "Next, in another shell (copy and paste; choose your own password in 1 and 2):",
        "  1. create an admin:",
        f"    $ {create}",
        "  2. log in (the answer's token is your admin session for /api/admin/**):",
        f"    $ {login}",
        "  3. fund an escrow, release 90.00 USD to payee_1 and request a payout for them:",
        f"    $ {payout}",
        "  then watch it reach FINALIZED (within about two minutes; put the payoutId of 3's answer in):",
        f"    $ {watch}",
    ]
    return "\n".join(lines)
