"""Question sets as people read them: an aligned text table, JSON or YAML."""

from __future__ import annotations

import json

from drf.table import format_table as format_columns
from drf.table import wrap_text
from prompts.schema import QuestionSet

_COLUMNS = ("id", "aspect", "kind", "question", "expected", "weight")


def format_table(qset: QuestionSet, width: int | None = None) -> str:
    """Columns id, aspect, kind, question, expected, weight that fit ``width`` (the terminal's by default), long
    cells wrapped; options the question text omits follow it."""
    rows = []
    for q in qset.questions:
        listed = all(option in q.text for option in q.options)
        text = q.text if listed else f"{q.text} [{' | '.join(q.options)}]"
        rows.append((q.id, q.aspect, q.kind, text, q.expected, f"{q.weight:g}"))
    made_by = f"{qset.decomposer} ({qset.config_hash})" if qset.config_hash else qset.decomposer
    header = [
        *wrap_text(f"prompt: {qset.prompt}", width, indent="  "),
        *wrap_text(f"decomposer: {made_by}, {len(qset)} questions", width, indent="  "),
    ]
    return "\n".join([*header, "", *format_columns(_COLUMNS, rows, numeric=(5,), width=width)])


def format_questions(qset: QuestionSet, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(qset.to_dict(), ensure_ascii=False, indent=2)
    if fmt == "yaml":
        return qset.to_yaml().rstrip()
    return format_table(qset)
