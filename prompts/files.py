"""File decomposer: hand-authored question sets, looked up by prompt.

Accepted layouts (the format follows the file extension):

- JSONL (``.jsonl``): one question set per line, ``{"prompt": ..., "questions": [...]}``.
- YAML (``.yaml``/``.yml``): a list of question sets, or a mapping ``prompt: [questions]``.
- JSON (``.json``): the same shapes as YAML.

A prompt matches exactly, or after collapsing whitespace and case; errors name the file and line of the bad set.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml

from drf.errors import InputError, QuestionError
from prompts.config import QuestionsConfig
from prompts.fingerprint import file_digest, fingerprint
from prompts.schema import QuestionSet


def normalize_prompt(prompt: str) -> str:
    return " ".join(prompt.split()).casefold()


def _question_lines(node: yaml.Node | None) -> list[int]:
    """Lines of the items of a question list node (none for another shape, which validation then reports)."""
    return [item.start_mark.line + 1 for item in node.value] if isinstance(node, yaml.SequenceNode) else []


def _yaml_entries(text: str, where: str) -> list[tuple[int, Any, list[int]]]:
    """(line, entry, line of each of its questions) of a YAML or JSON document, from the composed node tree."""
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        loc = f"{where}:{mark.line + 1}" if mark is not None else where
        raise QuestionError(f"{loc}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return []
    if isinstance(data, list):
        return [
            (item.start_mark.line + 1, entry, _question_lines(_value_of(item, "questions")))
            for item, entry in zip(node.value, data)
        ]
    if isinstance(data, dict):
        return [(key.start_mark.line + 1, {"prompt": prompt, "questions": questions}, _question_lines(value))
                for (key, value), (prompt, questions) in zip(node.value, data.items())]  # fmt: skip
    raise QuestionError(f"{where}: expected a list of question sets or a mapping prompt → questions")


def _value_of(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((value for k, value in node.value if getattr(k, "value", None) == key), None)
    return None


def _jsonl_entries(text: str, where: str) -> list[tuple[int, Any, list[int]]]:
    entries = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append((lineno, json.loads(line), []))
        except json.JSONDecodeError as err:
            raise QuestionError(f"{where}:{lineno}: invalid JSON ({err.msg})") from None
    return entries


def load_question_file(path: str | Path) -> dict[str, QuestionSet]:
    """Every question set of a file, keyed by normalised prompt; duplicate prompts are an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"question file {str(path)!r} does not exist; check questions.file")
    text = path.read_text(encoding="utf-8")
    entries = _jsonl_entries(text, str(path)) if path.suffix == ".jsonl" else _yaml_entries(text, str(path))
    sets: dict[str, QuestionSet] = {}
    first_line: dict[str, int] = {}
    for line, entry, question_lines in entries:
        qset = QuestionSet.from_dict(entry, where=f"{path}:{line}", question_wheres=[f"{path}:{n}" for n in question_lines])
        key = normalize_prompt(qset.prompt)
        if key in sets:
            raise QuestionError(f"{path}:{line}: prompt {qset.prompt!r} is already defined at line {first_line[key]}")
        sets[key] = qset
        first_line[key] = line
    return sets


def inputs(config: QuestionsConfig) -> dict[str, str]:
    """What the questions depend on besides the config: the question file's contents."""
    return {"file": file_digest(config.file)}


def decompose_file(prompt: str, config: QuestionsConfig) -> QuestionSet:
    sets = load_question_file(config.file)
    key = normalize_prompt(prompt)
    if key not in sets:
        nearest = difflib.get_close_matches(key, list(sets), n=1, cutoff=0.0)
        hint = f"; nearest is {sets[nearest[0]].prompt!r}" if nearest else "; the file has no question sets"
        raise QuestionError(f"prompt {prompt!r} is not in {config.file}{hint}")
    found = sets[key]
    aspects = set(config.active_aspects())
    return QuestionSet(
        prompt=prompt,
        questions=[q for q in found.questions if q.aspect in aspects],
        decomposer="file",
        config_hash=fingerprint(config, inputs(config)),
    )
