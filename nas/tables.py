"""Plain-text tables for the terminal."""
from __future__ import annotations

from typing import Any, Sequence


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned first column, right-aligned others, a rule under the header."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[c]) for r in cells)) if cells else len(h)
              for c, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if c == 0 else v.rjust(w)
                         for c, (v, w) in enumerate(zip(values, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])
