"""Plain-text tables for the audit commands' default (non --json) output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson


def cell(value: Any, width: int = 48) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> list[str]:
    """Columns padded to their widest cell; columns whose index is in `numeric` right-aligned."""
    cells = [list(headers), *[[cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return [line(cells[0]), "  ".join("-" * w for w in widths), *[line(r) for r in cells[1:]]]


def detail(data: dict[str, Any], skip: Sequence[str] = ()) -> str:
    """An event's data, compact, without the ids the timeline already shows."""
    return cell({k: v for k, v in data.items() if k not in skip}, 80)
