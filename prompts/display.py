"""Question sets as people read them: an aligned text table, JSON or YAML."""

from __future__ import annotations

import json

from prompts.schema import QuestionSet

_MAX_EXPECTED = 40  # a dense caption answer is the whole prompt; --format json/yaml shows it in full
_COLUMNS = ("id", "aspect", "kind", "question", "expected", "weight")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(qset: QuestionSet) -> str:
    """Plain columns (id, aspect, kind, question, expected, weight); options the question text omits follow it."""
    rows = [_COLUMNS]
    for q in qset.questions:
        listed = all(option in q.text for option in q.options)
        text = q.text if listed else f"{q.text} [{' | '.join(q.options)}]"
        rows.append((q.id, q.aspect, q.kind, text, _clip(q.expected, _MAX_EXPECTED), f"{q.weight:g}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    made_by = f"{qset.decomposer} ({qset.config_hash})" if qset.config_hash else qset.decomposer
    header = f"prompt: {qset.prompt}\ndecomposer: {made_by}, {len(qset)} questions"
    return header + "\n\n" + "\n".join(line.rstrip() for line in lines)


def format_questions(qset: QuestionSet, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(qset.to_dict(), ensure_ascii=False, indent=2)
    if fmt == "yaml":
        return qset.to_yaml().rstrip()
    return format_table(qset)
