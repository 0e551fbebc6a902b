"""Plain aligned text for the terminal (a few fixed columns: no table library needed) and JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from periodya.domain.money import exponent


def out(text: str = "") -> None:
    print(text, flush=True)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())  # one line per row, whatever a note or error contains


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "(none)") -> str:
    if not rows:
        return empty
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(width)}  {cell(v)}" for k, v in items)


def money(amount: int | None, currency: str | None) -> str:
    """Minor units shown in major units with the currency's own exponent: 4000 USD -> "40.00 USD"."""
    if amount is None or not currency:
        return "-"
    places = exponent(currency) if len(currency) == 3 and currency.isalpha() else 2
    if places == 0:
        return f"{amount} {currency}"
    sign, whole = ("-" if amount < 0 else ""), abs(amount)
    return f"{sign}{whole // 10 ** places}.{whole % 10 ** places:0{places}d} {currency}"


def age(since: str | None, now: datetime | None = None) -> str:
    """How long ago an RFC 3339 moment was, e.g. "3m12s", "2h05m", "4d03h"."""
    if not since:
        return "-"
    try:
        then = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return since
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
