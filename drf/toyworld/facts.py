"""Facts about one toy-world video and the one function that answers questions from them.

Ground truth (``truth.py``, facts read off the scene) and the oracle (``oracle.py``, facts measured from pixels) fill
the same ``Facts`` and share :func:`answer`, so the two can only disagree about what is in the video, never about how a
question is read. Questions are duck-typed (anything with ``id``, ``kind``, ``template``, ``slots``, ``options``;
``expected`` is used only for scoring), so this module does not depend on the prompts package.

Supported question templates (the part of ``Question.template`` after "#", or the first two parts of the id):
``align.object``, ``align.color``, ``align.size``, ``align.count``, ``align.count.all`` (how many objects in all, in
words), ``align.motion``, ``align.spatial``, ``align.camera`` (binary and the choice ``align.camera.motion``),
``align.camera.move`` (the camera move in words), ``align.setting``, ``phys.permanence`` (and ``.vanish``) and
``temp.identity``. Anything else answers None: not measurable here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drf.toyworld.scene import SHAPES

CAMERA_OPTION_WORDS = {
    "static": "static",
    "pan_left": "pan left",
    "pan_right": "pan right",
    "dolly_in": "dolly in",
    "dolly_out": "dolly out",
    "orbit_left": "orbit left",
    "orbit_right": "orbit right",
}
# How many objects there are, in words (the answer of ``align.count.all``; "none" for an empty scene).
NUMBER_WORDS = ("none", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
SUPPORTED_TEMPLATES = (
    "align.object",
    "align.color",
    "align.size",
    "align.count",
    "align.count.all",
    "align.motion",
    "align.spatial",
    "align.camera",
    "align.camera.move",
    "align.setting",
    "phys.permanence",
    "temp.identity",
)


@dataclass
class ObjectFacts:
    """One group of identical objects (same colour, shape and size); unknown attributes are None.

    ``x`` grows to the right of the frame-0 image, ``depth`` grows away from the frame-0 camera; both are only
    compared between objects, so each source may use its own units.
    """

    color: str
    shape: str | None = None
    size: str | None = None
    count: int = 1
    motion: str | None = "none"
    x: float | None = None
    depth: float | None = None
    present: bool = True  # visible (or known to exist) in every frame
    stable: bool = True  # keeps its colour, shape and size over the video


@dataclass
class Facts:
    objects: list[ObjectFacts] = field(default_factory=list)
    camera: str | None = None
    setting: str | None = None  # None: no recognised setting in view
    depth_gap: float = 0.0  # depths closer than this leave front/behind undetermined

    def matching(
        self, subject: Mapping[str, Any], ignore: tuple[str, ...] = (), unknown_matches: bool = False
    ) -> list[ObjectFacts]:
        """Objects whose attributes agree with the subject's slots (shape, color, size); an attribute the facts do
        not know (None) counts as agreeing only with ``unknown_matches``."""
        found = []
        for o in self.objects:
            if all(
                key in ignore
                or subject.get(key) is None
                or getattr(o, key) == subject.get(key)
                or (unknown_matches and getattr(o, key) is None)
                for key in ("shape", "color", "size")
            ):
                found.append(o)
        return found

    def count(self, subject: Mapping[str, Any]) -> int | None:
        """How many objects match, or None when unknown attributes leave it open."""
        strict = sum(o.count for o in self.matching(subject))
        loose = sum(o.count for o in self.matching(subject, unknown_matches=True))
        return strict if strict == loose else None


def template_name(question: Any) -> str:
    """"align.object" from "alignment.j2#align.object", else from the id's first two parts."""
    template = getattr(question, "template", None) or ""
    if "#" in template:
        return template.split("#", 1)[1]
    return ".".join(str(question.id).split(".")[:2])


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _is_toy(subject: Mapping[str, Any]) -> bool:
    return subject.get("shape", subject.get("noun")) in SHAPES


def single(facts: Facts, subject: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> ObjectFacts | None:
    """The one object the subject names, or None when it names none, several, or cannot be told apart."""
    if not isinstance(subject, Mapping) or not _is_toy(subject):
        return None
    found = facts.matching(subject, ignore)
    loose = facts.matching(subject, ignore, unknown_matches=True)
    return found[0] if len(found) == 1 and len(loose) == 1 else None


def _object(facts: Facts, slots: Mapping[str, Any]) -> str | None:
    if not _is_toy(slots):
        return None
    wanted = slots.get("count") or 1
    strict = sum(o.count for o in facts.matching(slots))
    loose = sum(o.count for o in facts.matching(slots, unknown_matches=True))
    answers = {_yes(total == wanted if wanted > 1 else total >= 1) for total in (strict, loose)}
    return answers.pop() if len(answers) == 1 else None


def _relation(facts: Facts, slots: Mapping[str, Any]) -> str | None:
    a, b = single(facts, slots.get("a", {})), single(facts, slots.get("b", {}))
    if a is None or b is None or a is b:
        return None
    relation = slots.get("relation")
    if relation in ("left_of", "right_of"):
        if a.x is None or b.x is None:
            return None
        return _yes((a.x < b.x) == (relation == "left_of"))
    if relation in ("in_front_of", "behind"):
        if a.depth is None or b.depth is None or abs(a.depth - b.depth) < facts.depth_gap:
            return None
        return _yes((a.depth < b.depth) == (relation == "in_front_of"))
    return None


def _camera(facts: Facts, question: Any) -> str | None:
    if facts.camera is None:
        return None
    if question.kind == "choice":
        word = CAMERA_OPTION_WORDS[facts.camera]
        return word if word in question.options else None
    wanted = question.slots.get("camera")
    return _yes(facts.camera == wanted) if wanted in CAMERA_OPTION_WORDS else None


def answer(facts: Facts, question: Any) -> str | None:
    """The answer ("yes"/"no", an option, or a word for dense colour questions) or None when not measurable."""
    name = template_name(question)
    slots = question.slots or {}
    if name == "align.object":
        return _object(facts, slots)
    if name == "align.color":
        o = single(facts, slots, ignore=("color",))
        return o.color if o is not None else None
    if name == "align.size":
        o = single(facts, slots, ignore=("size",))
        return o.size if o is not None and o.size in question.options else None
    if name == "align.count":
        if slots.get("noun") not in SHAPES:
            return None
        total = facts.count({"shape": slots["noun"]})
        return str(total) if total is not None and str(total) in question.options else None
    if name == "align.count.all":
        total = sum(o.count for o in facts.objects)
        return NUMBER_WORDS[total] if total < len(NUMBER_WORDS) else str(total)
    if name == "align.motion":
        o = single(facts, slots.get("subject", {}))
        return _yes(o.motion == slots.get("motion")) if o is not None and o.motion is not None else None
    if name == "align.spatial":
        return _relation(facts, slots)
    if name == "align.camera":
        return _camera(facts, question)
    if name == "align.camera.move":
        return CAMERA_OPTION_WORDS[facts.camera] if facts.camera is not None else None
    if name == "align.setting":
        return _yes(facts.setting == slots.get("setting"))
    if name == "phys.permanence":
        if not facts.objects:
            return None  # nothing to keep or lose
        present = all(o.present for o in facts.objects)
        return _yes(present) if str(question.id).endswith("permanence") else _yes(not present)
    if name == "temp.identity":
        o = single(facts, slots)
        return _yes(o.present and o.stable) if o is not None else None
    return None


def correct(given: str | None, question: Any) -> bool | None:
    """Whether an answer matches the question's expected answer (None when there is no answer)."""
    if given is None:
        return None
    return given.strip().lower() == str(question.expected).strip().lower()


def answer_and_score(facts: Facts, questions: Iterable[Any]) -> tuple[dict[str, str], dict[str, int]]:
    """({question id: answer}, {question id: 1 if the answer is the expected one else 0}) over the questions the
    facts can answer."""
    answers, scores = {}, {}
    for q in questions:
        given = answer(facts, q)
        if given is not None:
            answers[q.id], scores[q.id] = given, int(bool(correct(given, q)))
    return answers, scores
