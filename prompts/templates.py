"""Question templates: jinja2 files that turn slots into questions, rendered in a sandbox.

A template file (``templates/<aspect>.j2``) writes questions with the ``question`` call; the question text is the
body of a call block, so wording reads as prose and the structured facts travel separately::

    {% for s in subjects %}
    {% call question(id="align.object." ~ s.key, expected="yes", slots=s.facts) %}
      Is there {{ s.a }} in the video?
    {% endcall %}
    {% endfor %}

``question`` accepts ``id, kind="binary", expected, options, weight, slots, name, aspect, text``; ``aspect``
defaults to the file name (``physics.j2`` → physics) and ``name`` (the template field's "which question" part) to the
first two parts of the id. Files whose name starts with "_" are not question templates (helpers, llm instructions).

Everything is rendered with :class:`jinja2.sandbox.SandboxedEnvironment` and ``StrictUndefined``, so a misspelt slot
fails loudly instead of rendering an empty string. The context (what a template can read) is built from the rule
parser's slots by :func:`build_context`; the deterministic logic (keys, references, negatives, opposites) lives there
and the templates only word it:

- ``prompt``: the prompt text; ``negatives``: whether counterfactual questions are wanted
- ``subjects``: [{key, noun, plural, color, size, count, attributes, phrase "small red cube", a "a small red cube" /
  "two red cubes", the "the small red cube", unsized "the red cube", be "is"/"are", does "does"/"do", ref (colour-free unique reference such as
  "the cube", or none), facts}]
- ``counts``: [{noun, plural, count, options, facts}] — one per noun whose count is known
- ``absent``: subject-like records that are *not* in the prompt (colour swaps, missing toy shapes), for "no" questions
- ``motions``: [{subject, direction, phrase "to the left", opposite {direction, phrase} or none, facts}]
- ``actions``: [{subject or none, verb, facts}]
- ``relations``: [{relation, a, b, phrase "to the left of", opposite {relation, phrase} or none, facts}]
- ``camera``: none or {id "pan_right", phrase "pan right", question "pan to the right", opposite or none, facts};
  ``camera_options``: the choice options for camera motion
- ``setting``: none or {name, key, phrase "on a checkered floor", facts}; ``style``: [{name, key, facts}]; ``pairs``: [{a, b}] every pair of subjects
- filter ``combine``: ``facts | combine({"motion": "left"})`` is a copy of ``facts`` with the given keys replaced
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

from drf.errors import InputError, TemplateError
from prompts.rule import COLORS, TOY_SHAPES, plural_of
from prompts.schema import ASPECTS, Question

PACKAGED_DIR = Path(__file__).parent / "templates"
CONTEXT_NAMES = frozenset(
    "prompt negatives subjects counts absent motions actions relations camera camera_options setting style pairs "
    "question".split()
)
CAMERA_PHRASES = {
    "pan_left": ("pan left", "pan to the left"),
    "pan_right": ("pan right", "pan to the right"),
    "dolly_in": ("dolly in", "move in toward the scene"),
    "dolly_out": ("dolly out", "move back away from the scene"),
    "orbit_left": ("orbit left", "orbit to the left around the scene"),
    "orbit_right": ("orbit right", "orbit to the right around the scene"),
    "static": ("static", "stay still"),
}
_OPPOSITE_CAMERA = {
    "pan_left": "pan_right", "pan_right": "pan_left", "dolly_in": "dolly_out", "dolly_out": "dolly_in",
    "orbit_left": "orbit_right", "orbit_right": "orbit_left",
}  # fmt: skip
_MOTION_PHRASES = {
    "left": "to the left",
    "right": "to the right",
    "toward": "toward the camera",
    "away": "away from the camera",
}
_OPPOSITE_MOTION = {"left": "right", "right": "left", "toward": "away", "away": "toward"}
_RELATION_PHRASES = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "in_front_of": "in front of",
    "behind": "behind",
    "next_to": "next to",
    "above": "above",
    "below": "below",
}
_OPPOSITE_RELATION = {
    "left_of": "right_of", "right_of": "left_of", "in_front_of": "behind", "behind": "in_front_of",
    "above": "below", "below": "above",
}  # fmt: skip
_ON_SETTINGS = frozenset("floor ground beach street road table stage grass sand snow bridge field farm".split())
_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def _key_part(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _subject_view(facts: dict[str, Any], key: str) -> dict[str, Any]:
    words = [w for w in (facts.get("size"), facts.get("color")) if w]
    phrase = " ".join([*words, *facts.get("attributes", []), facts["noun"]])
    count = facts.get("count")
    many = count is not None and count > 1
    colour_attrs = [*([facts["color"]] if facts.get("color") else []), *facts.get("attributes", [])]
    noun = facts["plural"] if many else facts["noun"]
    if many:
        a = f"{_NUMBER_WORDS.get(count, str(count))} {' '.join([*words, *facts.get('attributes', []), noun])}"
    else:
        a = f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"
    return {
        "key": key,
        "noun": facts["noun"],
        "plural": facts["plural"],
        "color": facts.get("color"),
        "size": facts.get("size"),
        "count": count,
        "attributes": list(facts.get("attributes", [])),
        "phrase": phrase,
        "a": a,
        "the": " ".join(["the", *words, *facts.get("attributes", []), noun]),
        "unsized": " ".join(["the", *colour_attrs, noun]),
        "be": "are" if many else "is",
        "does": "do" if many else "does",
        "ref": None,
        "facts": dict(facts),
    }


def _subject_keys(subjects: list[dict[str, Any]]) -> list[str]:
    """Readable unique keys: colour_noun, then size_colour_noun where that collides, then a numeric suffix."""
    def key_of(s: dict[str, Any], with_size: bool) -> str:
        parts = [s.get("size") if with_size else None, s.get("color"), *s.get("attributes", []), s["noun"]]
        return _key_part("_".join(p for p in parts if p))

    keys = [key_of(s, False) for s in subjects]
    keys = [key_of(s, True) if keys.count(k) > 1 else k for s, k in zip(subjects, keys)]
    seen: dict[str, int] = {}
    unique = []
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
        unique.append(k if seen[k] == 1 and keys.count(k) == 1 else f"{k}_{seen[k]}")
    return unique


def _colour_free_ref(view: dict[str, Any], views: list[dict[str, Any]]) -> str | None:
    """"the cube" when it is the only cube, "the small cube" when size tells it apart, else none."""
    same_noun = [v for v in views if v["noun"] == view["noun"]]
    if view["count"] is not None and view["count"] > 1:
        return None
    if len(same_noun) == 1:
        return f"the {view['noun']}"
    if view["size"] and sum(v["size"] == view["size"] for v in same_noun) == 1:
        return f"the {view['size']} {view['noun']}"
    return None


def _absent(views: list[dict[str, Any]], all_toy: bool) -> list[dict[str, Any]]:
    """Deterministic counterfactual subjects: one colour swap per fully coloured noun, one missing toy shape."""
    absent: list[dict[str, Any]] = []
    nouns = list(dict.fromkeys(v["noun"] for v in views))
    for noun in nouns:
        same = [v for v in views if v["noun"] == noun]
        if not all(v["color"] for v in same):
            continue
        used = {v["color"] for v in same}
        start = COLORS.index(same[0]["color"]) if same[0]["color"] in COLORS else 0
        swap = next((COLORS[(start + k) % len(COLORS)] for k in range(1, len(COLORS) + 1)
                     if COLORS[(start + k) % len(COLORS)] not in used), None)  # fmt: skip
        if swap is not None:
            facts = {"noun": noun, "plural": same[0]["plural"], "color": swap, "attributes": []}
            if noun in TOY_SHAPES:
                facts["shape"] = noun
            absent.append(_subject_view(facts, _key_part(f"{swap}_{noun}")))
    if all_toy and views:
        missing = [s for s in TOY_SHAPES if s not in nouns]
        if missing:
            facts = {"noun": missing[0], "plural": missing[0] + "s", "shape": missing[0], "attributes": []}
            absent.append(_subject_view(facts, missing[0]))
    return absent


SLOT_NAMES = ("prompt", "subjects", "motions", "actions", "relations", "camera", "setting", "style")


def normalize_slots(slots: dict[str, Any]) -> dict[str, Any]:
    """Hand-written slots (``drf templates render --slot``) completed with defaults and checked, naming the bad slot."""
    unknown = [k for k in slots if k not in SLOT_NAMES]
    if unknown:
        near = difflib.get_close_matches(unknown[0], SLOT_NAMES, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; slots are {', '.join(SLOT_NAMES)}"
        raise InputError(f"unknown slot {unknown[0]!r}{hint}")
    out = {"prompt": "a video", "subjects": [], "motions": [], "actions": [], "relations": [], "camera": None,
           "setting": None, "style": []} | dict(slots)  # fmt: skip
    for name in ("subjects", "motions", "actions", "relations", "style"):
        if not isinstance(out[name], list):
            raise InputError(f"slot {name!r} must be a list, got {out[name]!r}")
    subjects = []
    for i, subject in enumerate(out["subjects"]):
        if isinstance(subject, str):
            subject = {"noun": subject}
        if not isinstance(subject, dict) or not (subject.get("noun") or subject.get("shape")):
            raise InputError(f"slot subjects[{i}] needs a 'noun' (or 'shape'), got {subject!r}")
        noun = str(subject.get("noun") or subject["shape"])
        filled = {"noun": noun, "plural": plural_of(noun), "attributes": []} | subject
        if noun in TOY_SHAPES:
            filled["shape"] = noun
        subjects.append(filled)
    out["subjects"] = subjects
    for name, keys in (("motions", ("subject",)), ("relations", ("a", "b")), ("actions", ())):
        for i, entry in enumerate(out[name]):
            for key in keys:
                if not isinstance(entry, dict) or not isinstance(entry.get(key), int) or not 0 <= entry[key] < len(subjects):
                    raise InputError(f"slot {name}[{i}].{key} must be the index of a subject (0..{len(subjects) - 1})")
    if out["camera"] is not None and out["camera"] not in CAMERA_PHRASES:
        raise InputError(f"slot camera is {out['camera']!r}; expected one of {', '.join(CAMERA_PHRASES)}")
    for i, m in enumerate(out["motions"]):
        if m.get("direction") not in _MOTION_PHRASES:
            raise InputError(f"slot motions[{i}].direction must be one of {', '.join(_MOTION_PHRASES)}")
    for i, r in enumerate(out["relations"]):
        if r.get("relation") not in _RELATION_PHRASES:
            raise InputError(f"slot relations[{i}].relation must be one of {', '.join(_RELATION_PHRASES)}")
    return out


def build_context(slots: dict[str, Any], negatives: bool = True) -> dict[str, Any]:
    """Template context from rule-parser slots (see the module docstring for every name)."""
    subjects = list(slots.get("subjects", []))
    keys = _subject_keys(subjects)
    views = [_subject_view(s, k) for s, k in zip(subjects, keys)]
    for view in views:
        view["ref"] = _colour_free_ref(view, views)
    counts = []
    for noun in dict.fromkeys(v["noun"] for v in views):
        same = [v for v in views if v["noun"] == noun]
        if any(v["count"] is None for v in same):
            continue
        total = sum(v["count"] for v in same)
        options = ["1", "2", "3"] + ([str(total)] if total > 3 else [])
        counts.append({"noun": noun, "plural": same[0]["plural"], "count": total, "options": options,
                       "expected": str(total), "facts": {"noun": noun, "count": total}})  # fmt: skip
    motions = []
    for m in slots.get("motions", []):
        direction = m["direction"]
        opposite = _OPPOSITE_MOTION[direction]
        motions.append({
            "subject": views[m["subject"]], "direction": direction, "verb": m.get("verb", "moves"),
            "phrase": _MOTION_PHRASES[direction],
            "opposite": {"direction": opposite, "phrase": _MOTION_PHRASES[opposite]} if negatives else None,
            "facts": {"subject": views[m["subject"]]["facts"], "motion": direction},
        })  # fmt: skip
    actions = []
    for a in slots.get("actions", []):
        subject = views[a["subject"]] if a.get("subject") is not None else None
        facts = {"verb": a["verb"]} | ({"subject": subject["facts"]} if subject else {})
        actions.append({"subject": subject, "verb": a["verb"], "facts": facts})
    relations = []
    for r in slots.get("relations", []):
        rel, a, b = r["relation"], views[r["a"]], views[r["b"]]
        opposite = _OPPOSITE_RELATION.get(rel) if negatives else None
        relations.append({
            "relation": rel, "a": a, "b": b, "phrase": _RELATION_PHRASES[rel],
            "opposite": {"relation": opposite, "phrase": _RELATION_PHRASES[opposite]} if opposite else None,
            "facts": {"relation": rel, "a": a["facts"], "b": b["facts"]},
        })  # fmt: skip
    camera = None
    if slots.get("camera"):
        cid = slots["camera"]
        opposite = _OPPOSITE_CAMERA.get(cid) if negatives else None
        camera = {
            "id": cid, "phrase": CAMERA_PHRASES[cid][0], "question": CAMERA_PHRASES[cid][1],
            "opposite": {"id": opposite, "phrase": CAMERA_PHRASES[opposite][0],
                         "question": CAMERA_PHRASES[opposite][1]} if opposite else None,
            "facts": {"camera": cid},
        }  # fmt: skip
    setting = slots.get("setting")
    all_toy = bool(views) and all(v["noun"] in TOY_SHAPES for v in views)
    return {
        "prompt": slots.get("prompt", ""),
        "negatives": negatives,
        "subjects": views,
        "counts": counts,
        "absent": _absent(views, all_toy) if negatives else [],
        "motions": motions,
        "actions": actions,
        "relations": relations,
        "camera": camera,
        "camera_options": [phrase for phrase, _ in CAMERA_PHRASES.values()],
        "setting": _setting_view(setting) if setting else None,
        "style": [{"name": s, "key": _key_part(s), "facts": {"style": s}} for s in slots.get("style", [])],
        "pairs": [{"a": a, "b": b} for i, a in enumerate(views) for b in views[i + 1 :]],
    }


def _setting_view(name: str) -> dict[str, Any]:
    preposition = "on" if name.split()[-1] in _ON_SETTINGS else "in"
    article = "an" if name[0] in "aeiou" else "a"
    return {"name": name, "key": _key_part(name), "phrase": f"{preposition} {article} {name}", "facts": {"setting": name}}


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
                 name=None, aspect=None, caller=None) -> str:  # fmt: skip
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
    from drf.errors import QuestionError

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
