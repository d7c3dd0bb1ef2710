"""Aligned text tables that fit the terminal: the widest text columns are narrowed and their cells wrapped."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence

GAP = "  "


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = (), width: int | None = None
) -> list[str]:
    """Lines of ``headers``, a rule and ``rows``, at most ``width`` columns wide (the terminal's width by default,
    ``COLUMNS`` when set); ``numeric`` columns are right-aligned and never wrapped."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    narrowable = [i for i in range(len(headers)) if i not in numeric]
    room = width - len(GAP) * (len(widths) - 1) - sum(widths[i] for i in numeric)
    if narrowable and sum(widths[i] for i in narrowable) > room:
        # Each text column keeps a floor (the first column, the row's name, up to 2/5 of the width) and gets a share of
        # the rest in proportion to what it would need, so the long columns (questions, explanations, help texts)
        # stay the widest; below the floors lines stay too wide.
        floors = {i: min(widths[i], max(12, len(headers[i]), width * 2 // 5 if i == 0 else 0)) for i in narrowable}
        spare = max(0, room - sum(floors.values()))
        need = {i: widths[i] - floors[i] for i in narrowable}
        total = sum(need.values()) or 1
        for i in narrowable:
            widths[i] = floors[i] + need[i] * spare // total
    lines = []
    for cells in (list(headers), ["-" * w for w in widths], *rows):
        wrapped = [
            [cell] if i in numeric else textwrap.wrap(cell, w, break_on_hyphens=False) or [""]
            for i, (cell, w) in enumerate(zip(cells, widths))
        ]
        for k in range(max(len(parts) for parts in wrapped)):
            texts = [parts[k] if k < len(parts) else "" for parts in wrapped]
            line = [t.rjust(w) if i in numeric else t.ljust(w) for i, (t, w) in enumerate(zip(texts, widths))]
            lines.append(GAP.join(line).rstrip())
    return lines
