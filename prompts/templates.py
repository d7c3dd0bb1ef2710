"""Question templates: jinja2 files that turn slots into questions, rendered in a sandbox.

A template file (``templates/<aspect>.j2``) writes questions with the ``question`` call; the question text is the
body of a call block, so wording reads as prose and the structured facts travel separately::

    {% for s in subjects %}
    {% call question(id="align.object." ~ s.key, expected="yes", slots=s.facts) %}
      Is there {{ s.a }} in the video?
    {% endcall %}
    {% endfor %}

``question`` accepts ``id, kind="binary", expected, options, weight, slots, name, aspect, text, token_weights``;
``aspect`` defaults to the file name (``physics.j2`` → physics) and ``name`` (the template field's "which question"
part) to the first two parts of the id. Files whose name starts with "_" are not question templates (helpers, llm instructions).

Everything is rendered with :class:`jinja2.sandbox.SandboxedEnvironment` and ``StrictUndefined``, so a misspelt slot
fails loudly instead of rendering an empty string. What a template can read is documented in ``prompts.context``.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

from drf.errors import QuestionError, TemplateError
from prompts.context import CONTEXT_NAMES, build_context, stop_word_weights
from prompts.schema import ASPECTS, Question

PACKAGED_DIR = Path(__file__).parent / "templates"


@dataclass
class Record:
    """One ``question(...)`` call as rendered: where it was written and what it said."""

    file: str
    line: int | None
    fields: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


def _template_line() -> tuple[str | None, int | None]:
    """File and line of the template code calling ``question`` (jinja keeps the template on its module globals)."""
    frame = sys._getframe(2)
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            return template.name, template.get_corresponding_lineno(frame.f_lineno)
        frame = frame.f_back
    return None, None


class _QuestionCollector:
    """The ``question`` callable a template sees; it records each call and renders nothing."""

    def __init__(self, default_file: str) -> None:
        self.default_file = default_file
        self.records: list[Record] = []

    def __call__(self, id=None, kind="binary", expected=None, text=None, options=None, weight=1.0, slots=None,
                 name=None, aspect=None, token_weights=None, caller=None) -> str:  # fmt: skip
        file, line = _template_line()
        file = file or self.default_file
        if caller is not None:
            text = caller()
        text = " ".join(str(text).split()) if text is not None else None
        stem = Path(file).stem
        fields = {
            "id": id, "aspect": aspect if aspect is not None else stem, "kind": kind, "text": text,
            "expected": None if expected is None else str(expected).strip(),
            "options": [str(o) for o in options] if options is not None else [],
            "weight": weight, "slots": _plain(slots) if slots is not None else {},
        }  # fmt: skip
        if token_weights:
            fields["token_weights"] = _plain(token_weights)
        record = Record(file, line, fields)
        if not id:
            record.problems.append("question without an id")
        else:
            fields["template"] = f"{Path(file).name}#{name or '.'.join(str(id).split('.')[:2])}"
        if not fields["expected"]:
            record.problems.append(f"question {id!r} has no expected answer")
        if not text:
            record.problems.append(f"question {id!r} has no text")
        self.records.append(record)
        return ""


def _plain(value: Any) -> Any:
    """Slots as plain JSON-able values (jinja hands back its own mapping and sequence types)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def templates_dir(path: str | Path | None = None) -> Path:
    return Path(path) if path else PACKAGED_DIR


def template_files(directory: str | Path | None = None) -> list[Path]:
    """Question template files of a folder in a stable order: the aspects first, then any other file."""
    folder = templates_dir(directory)
    files = [p for p in folder.glob("*.j2") if not p.name.startswith("_")]
    order = {a: i for i, a in enumerate(ASPECTS)}
    return sorted(files, key=lambda p: (order.get(p.stem, len(order)), p.name))


def templates_digest(directory: str | Path | None = None) -> str:
    digest = hashlib.sha256()
    for path in sorted(templates_dir(directory).glob("*.j2")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def make_environment(directory: str | Path | None = None) -> SandboxedEnvironment:
    """The sandboxed environment of a template folder, shared per folder (compiled templates are cached inside)."""
    return _environment(str(templates_dir(directory).resolve()))


@functools.lru_cache(maxsize=16)
def _environment(directory: str) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["combine"] = _combine
    env.filters["stop_word_weights"] = stop_word_weights
    return env


def _combine(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``facts | combine({...})``: a copy of ``base`` updated with ``extra`` (for counterfactual slots)."""
    return {**base, **extra}


def error_line(err: BaseException, filename: str | None) -> int | None:
    """Template line of a rendering error: jinja rewrites tracebacks so that a frame of the template file carries
    the template line; frames still running compiled template code map their line through the template."""
    line = getattr(err, "lineno", None)
    tb = err.__traceback__
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if template is not None:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        elif filename is not None and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@dataclass
class Rendered:
    """Result of rendering one template: its question records and any text written outside ``question`` calls."""

    file: str
    records: list[Record]
    stray_text: str


def render_file(env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> Rendered:
    """Render template ``name``; syntax and undefined-slot errors become TemplateError with file:line."""
    collector = _QuestionCollector(name)
    filename = None
    try:
        template = env.get_template(name)
        filename = template.filename
        output = template.render(**context, question=collector)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(f"{name}:{err.lineno}: syntax error: {err.message}") from None
    except jinja2.TemplateNotFound as err:
        raise TemplateError(f"template {err.name!r} not found in {env.loader.searchpath}") from None
    except jinja2.UndefinedError as err:
        raise TemplateError(f"{name}:{error_line(err, filename)}: undefined slot: {err.message}") from None
    except jinja2.exceptions.SecurityError as err:
        raise TemplateError(f"{name}:{error_line(err, filename)}: not allowed in a template: {err}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
        raise TemplateError(f"{name}:{error_line(err, filename)}: {type(err).__name__}: {err}") from None
    return Rendered(name, collector.records, output.strip())


def records_to_questions(records: list[Record]) -> list[Question]:
    """Validate records into questions; the first problem raises TemplateError naming file:line and question id."""
    questions: list[Question] = []
    seen: dict[str, str] = {}
    for record in records:
        if record.problems:
            raise TemplateError(f"{record.where}: {record.problems[0]}")
        try:
            question = Question.from_dict(record.fields)
        except QuestionError as err:
            raise TemplateError(f"{record.where}: {err}") from None
        if question.id in seen:
            raise TemplateError(f"{record.where}: duplicate question id {question.id!r} (first at {seen[question.id]})")
        seen[question.id] = record.where
        questions.append(question)
    return questions


def render_questions(slots: dict[str, Any], config) -> list[Question]:
    """Every template of ``config.templates_dir`` rendered for ``slots``, keeping the configured aspects only."""
    env = make_environment(config.templates_dir)
    context = build_context(slots, negatives=config.negatives)
    records: list[Record] = []
    for path in template_files(config.templates_dir):
        records.extend(render_file(env, path.name, context).records)
    aspects = set(config.active_aspects())
    return [q for q in records_to_questions(records) if q.aspect in aspects]


def render_template(name: str, slots: dict[str, Any], directory: str | Path | None = None,
                    negatives: bool = True) -> list[Question]:  # fmt: skip
    """One template rendered for ``slots`` (a path to a .j2 file or a name in ``directory``, with or without .j2)."""
    path = Path(name)
    if path.suffix == ".j2" and path.is_file():
        directory, name = path.parent, path.name
    elif not name.endswith(".j2"):
        name = f"{name}.j2"
    env = make_environment(directory)
    return records_to_questions(render_file(env, name, build_context(slots, negatives)).records)


def undeclared_names(env: SandboxedEnvironment, name: str) -> dict[str, int]:
    """Names a template reads that the context does not provide, each with the first line using it."""
    source = env.loader.get_source(env, name)[0]
    ast = env.parse(source, name=name)
    unknown = jinja2.meta.find_undeclared_variables(ast) - CONTEXT_NAMES - set(env.globals)
    lines: dict[str, int] = {}
    for node in ast.find_all(jinja2.nodes.Name):
        if node.name in unknown and node.name not in lines:
            lines[node.name] = node.lineno
    return dict(sorted(lines.items(), key=lambda item: item[1]))
