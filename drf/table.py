"""Aligned text tables and lines that fit the terminal: long text columns are narrowed and their cells wrapped.

Every table drf prints goes through :func:`format_table`, so ``drf questions``, ``drf score``, ``drf inspect``,
``drf config reference`` and the before/after summary of a training run wrap the same way at any width.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence

GAP = "  "
MIN_TEXT = 10  # the narrowest a wrapped text column is made while the others can give room
PIPED_WIDTH = 100  # output piped to a file or another program: wide enough for a table, narrow enough to read
_BREAKS = ("./", "_")  # an identifier too long for its column breaks after a dot or slash, else an underscore


def terminal_width() -> int:
    """``COLUMNS`` when set, else the terminal's width, else (piped) ``PIPED_WIDTH``."""
    return shutil.get_terminal_size((PIPED_WIDTH, 24)).columns


def _split_word(word: str, width: int) -> list[str]:
    """A word wider than ``width`` in pieces, each cut after its last ``.`` or ``/`` that fits, else its last ``_``,
    else at ``width`` characters (so ``align.spatial.red_cube.left_of.blue_sphere`` stays readable)."""
    pieces = []
    while len(word) > width:
        cut = next((cut for chars in _BREAKS if (cut := max(word.rfind(c, 0, width) for c in chars) + 1)), width)
        pieces.append(word[:cut])
        word = word[cut:]
    return [*pieces, word] if word else pieces


def wrap_cell(text: str, width: int) -> list[str]:
    """``text`` on lines of at most ``width`` characters, broken between words, a word too long at its dots."""
    width = max(1, width)
    lines: list[str] = []
    line = ""
    for word in str(text).split():
        if len(line) + bool(line) + len(word) <= width:
            line = f"{line} {word}" if line else word
            continue
        if line:
            lines.append(line)
        *whole, line = _split_word(word, width)
        lines += whole
    return [*lines, line] if line or not lines else lines


def wrap_text(text: str, width: int | None = None, indent: str = "") -> list[str]:
    """A line of prose (a title, a note) wrapped to ``width``; continuation lines start with ``indent``."""
    width = width or terminal_width()
    return textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False) or [""]


def _typical(lengths: list[int]) -> int:
    """The length 4 cells in 5 of a column fit in: what a column is given room by, so that one long cell (a caption
    among yes/no answers) does not widen its column for every row."""
    ordered = sorted(lengths)
    return ordered[(len(ordered) - 1) * 4 // 5]


def _column_widths(cells: list[list[int]], headers: Sequence[str], text: list[int], room: int) -> list[int]:
    """Widths of the columns (``cells``: each column's cell lengths, header first) when the ``text`` columns must
    share ``room``: a text column no wider than an equal share keeps its width; each other one gets a floor (its
    header, and ``MIN_TEXT`` characters where that fits) and a share of the rest in proportion to its typical cell
    (the first column, which names the row, to its widest cell), never more than its widest cell."""
    widths = [max(lengths) for lengths in cells]
    long = sorted(text, key=lambda i: widths[i])
    while long and widths[long[0]] <= room / len(long):
        room -= widths[long.pop(0)]
    floors = {i: min(widths[i], max(len(headers[i]), MIN_TEXT)) for i in long}
    if sum(floors.values()) > room:
        floors = {i: max(1, len(headers[i])) for i in long}
    weight = {i: max(1, (widths[i] if i == 0 else _typical(cells[i])) - floors[i]) for i in long}
    while long:
        spare = room - sum(floors[i] for i in long)
        share = {i: floors[i] + max(0, spare) * weight[i] // sum(weight[i] for i in long) for i in long}
        whole = [i for i in long if share[i] >= widths[i]]
        if not whole:
            share[long[-1]] += max(0, room - sum(share.values()))  # what rounding left over, to the widest
            return [share.get(i, w) for i, w in enumerate(widths)]
        for i in whole:  # it fits whole: keep its width and share the rest among the others
            room -= widths[i]
            long.remove(i)
    return widths


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = (), width: int | None = None
) -> list[str]:
    """Lines of ``headers``, a rule and ``rows``, at most ``width`` columns wide (:func:`terminal_width` by default);
    ``numeric`` columns are right-aligned and never wrapped, text columns wrap inside their cells. Lines stay wider
    only when the numbers and the text columns' headers alone do not fit."""
    width = width or terminal_width()
    cells = [[len(h), *(len(str(r[i])) for r in rows)] for i, h in enumerate(headers)]
    widths = [max(lengths) for lengths in cells]
    text = [i for i in range(len(headers)) if i not in numeric]
    room = width - len(GAP) * (len(headers) - 1) - sum(widths[i] for i in numeric)
    if sum(widths[i] for i in text) > room:
        widths = _column_widths(cells, headers, text, room)
    lines = []
    for cells in (list(headers), ["-" * w for w in widths], *rows):
        wrapped = [
            [str(cell)] if i in numeric else wrap_cell(cell, w) for i, (cell, w) in enumerate(zip(cells, widths))
        ]
        for k in range(max(len(parts) for parts in wrapped)):
            texts = [parts[k] if k < len(parts) else "" for parts in wrapped]
            line = [t.rjust(w) if i in numeric else t.ljust(w) for i, (t, w) in enumerate(zip(texts, widths))]
            lines.append(GAP.join(line).rstrip())
    return lines
