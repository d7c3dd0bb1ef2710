"""``drf templates lint``: find template defects before they reach a training run.

Reported, each as ``file:line: message``: syntax errors, names a template reads that the context does not provide
(undefined slots, also misspelt attributes found by rendering with StrictUndefined), questions without an expected
answer, id or text, questions the schema rejects, duplicate ids across the folder, and text written outside
``question`` calls. Templates are rendered against sample prompts that exercise every part of the context.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from drf.errors import QuestionError, TemplateError
from prompts.context import build_context
from prompts.parse import parse_prompt
from prompts.schema import Question
from prompts.templates import (
    Record,
    make_environment,
    render_file,
    template_files,
    templates_dir,
    undeclared_names,
)

# Together these give every context list a member and every optional value both states.
SAMPLE_PROMPTS = (
    "a small red cube left of a blue sphere on a checkered floor, the camera pans right",
    "two large green cylinders and a yellow sphere, the yellow sphere rolls toward the camera, static camera",
    "a man walking a dog in the park, cinematic, slow motion",
    "running in the rain",
    "?",
)


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


def _from_template_error(err: TemplateError, folder: Path) -> Problem:
    """TemplateError messages start with "name:line: "; split them back into a Problem."""
    text = str(err)
    head, _, rest = text.partition(": ")
    name, _, line = head.rpartition(":")
    if name and line.isdigit():
        return Problem(str(folder / name), int(line), rest)
    return Problem(str(folder), 0, text)


def _record_problems(records: list[Record], folder: Path, seen: dict[str, str]) -> list[Problem]:
    problems = []
    for record in records:
        where = Problem(str(folder / record.file), record.line or 0, "")
        if record.problems:
            problems.extend(Problem(where.file, where.line, p) for p in record.problems)
            continue
        try:
            question = Question.from_dict(record.fields)
        except QuestionError as err:
            problems.append(Problem(where.file, where.line, str(err)))
            continue
        if question.id in seen:
            problems.append(
                Problem(where.file, where.line, f"duplicate question id {question.id!r} (first at {seen[question.id]})")
            )
        else:
            seen[question.id] = f"{record.file}:{record.line}"
    return problems


def lint_templates(directory: str | Path | None = None) -> list[Problem]:
    """Every problem found in the templates of ``directory`` (the packaged templates by default), sorted."""
    folder = templates_dir(directory)
    if not folder.is_dir():
        raise TemplateError(f"template folder {str(folder)!r} does not exist")
    env = make_environment(folder)
    problems: set[Problem] = set()
    renderable = []
    for path in sorted(folder.glob("*.j2")):
        try:
            env.parse(path.read_text(encoding="utf-8"), name=path.name)
        except jinja2.TemplateSyntaxError as err:
            problems.add(Problem(str(path), err.lineno, f"syntax error: {err.message}"))
            continue
        if path.name.startswith("_"):
            continue
        undefined = undeclared_names(env, path.name)
        for name, line in undefined.items():
            problems.add(Problem(str(path), line, f"undefined slot {name!r}"))
        if not undefined:
            renderable.append(path)
    order = {p.name: i for i, p in enumerate(template_files(folder))}
    renderable.sort(key=lambda p: order.get(p.name, len(order)))
    for prompt in SAMPLE_PROMPTS:
        for negatives in (True, False):
            context = build_context(parse_prompt(prompt), negatives=negatives)
            seen: dict[str, str] = {}
            for path in renderable:
                try:
                    rendered = render_file(env, path.name, context)
                except TemplateError as err:
                    problems.add(_from_template_error(err, folder))
                    continue
                problems.update(_record_problems(rendered.records, folder, seen))
                if rendered.stray_text:
                    snippet = rendered.stray_text[:60].replace("\n", " ")
                    problems.add(Problem(str(path), 0, f"text outside question() calls: {snippet!r}"))
    return sorted(problems)
