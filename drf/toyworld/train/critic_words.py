"""The toy critic's words: what its words phase is taught to say, and how what it says is checked.

- **Replies**, read off scene truth (``drf.toyworld.truth``), never off the pixel oracle: a dense question's answer
  in words ("red", "two", "pan right", the scene's own sentence), and for each alignment question the one sentence
  ``explain`` generates, "<answer>: <what the video shows>." ("no: there is a small green sphere."). Every word of
  them is a word of the world's prompts and questions, so the toy tokenizers hold each as one token.
- **Claims** read back from a generated sentence, minimally: the answer before the colon, and the count, colour and
  shape words of what it says the video shows. The oracle (``drf.toyworld.oracle``) confirms them or not on the
  video, as an independent judge.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from drf.toyworld.facts import NUMBER_WORDS, Facts, ObjectFacts, answer, single, template_name
from drf.toyworld.grammar import CAMERA_PHRASES
from drf.toyworld.scene import SHAPES, WORLD_COLORS, Scene
from drf.toyworld.train.critic_data import balanced, question_prompts, render_questions, shown_scene
from drf.toyworld.truth import scene_facts

# Question templates whose answers are explained (and checked): the alignment questions about objects and camera.
EXPLAINED = (
    "align.object", "align.color", "align.size", "align.count", "align.count.all", "align.motion", "align.spatial",
    "align.camera", "align.camera.move",
)  # fmt: skip
MOTION_PHRASES = {
    "none": "is still",
    "left": "moves to the left",
    "right": "moves to the right",
    "toward": "moves toward the camera",
    "away": "moves away from the camera",
}


@dataclass(frozen=True)
class Reply:
    """One reply to teach: ``question`` (``expected`` holds its truth label) asked in ``mode`` ("score" or
    "explain", see ``critics.vlm``), and the text the critic should generate."""

    question: Any
    mode: str
    text: str


# ---------------------------------------------------------------------------------------------------------------
# Replies from truth


def _named(o: ObjectFacts) -> str:
    """"a small red cube", "two large yellow cubes"."""
    count = "a" if o.count == 1 else NUMBER_WORDS[o.count]
    return " ".join([count, o.size or "", o.color, o.shape + ("s" if o.count > 1 else "")]).replace("  ", " ")


def _the(o: ObjectFacts) -> str:
    return f"the {o.color} {o.shape}" + ("s" if o.count > 1 else "")


def _there(objects: list[ObjectFacts], noun: str) -> str:
    if not objects:
        return f"there is no {noun}"
    return f"there {'is' if objects[0].count == 1 else 'are'} " + " and ".join(_named(o) for o in objects)


def statement(facts: Facts, question: Any) -> str | None:
    """What the video shows that settles ``question``, in the world's words ("the camera pans right"), from
    ``facts``; None for a template that is not explained or a subject the facts do not single out."""
    name, slots = template_name(question), question.slots or {}
    if name == "align.object" and slots.get("shape") in SHAPES:
        return _there(facts.matching({"shape": slots["shape"]}), slots["shape"])
    if name == "align.count.all":
        return _there(facts.objects, "object")
    if name == "align.count" and slots.get("noun") in SHAPES:
        total = facts.count({"shape": slots["noun"]})
        if total is None:
            return None
        noun = slots["noun"] + ("s" if total != 1 else "")
        return f"there {'is' if total == 1 else 'are'} {NUMBER_WORDS[total]} {noun}"
    if name in ("align.camera", "align.camera.move"):
        return CAMERA_PHRASES[facts.camera] if facts.camera is not None else None
    if name == "align.spatial":
        a, b = single(facts, slots.get("a", {})), single(facts, slots.get("b", {}))
        if a is None or b is None or a is b or a.x is None or b.x is None:
            return None
        return f"{_the(a)} is to the {'left' if a.x < b.x else 'right'} of {_the(b)}"
    subject = slots.get("subject", {}) if name == "align.motion" else slots
    ignore = {"align.color": ("color",), "align.size": ("size",)}.get(name, ())
    o = single(facts, subject, ignore) if name in ("align.color", "align.size", "align.motion") else None
    if o is None:
        return None
    if name == "align.motion":
        return f"{_the(o)} {MOTION_PHRASES[o.motion]}" if o.motion in MOTION_PHRASES else None
    be = "is" if o.count == 1 else "are"
    if name == "align.color":  # named as the question names it, without its colour
        return f"the {o.shape}{'s' if o.count > 1 else ''} {be} {o.color}"
    return f"{_the(o)} {be} {o.size}"


def reply_text(facts: Facts, question: Any, mode: str) -> str | None:
    """The text to generate for ``question`` (its ``expected`` is the truth) in ``mode``: the bare answer in score
    mode; "<answer>: <statement>." in explain mode (a caption is its own explanation)."""
    if mode == "score" or template_name(question) == "align.caption":
        return question.expected
    said = statement(facts, question)
    return f"{question.expected}: {said}." if said is not None else None


def replies(scene: Scene, asked: Scene, kind: str, rng: random.Random, per_video: int) -> list[Reply]:
    """What to teach about a render of ``scene`` degraded by ``kind`` and asked about with ``asked``'s prompts: the
    answer of every dense question in words, then explanations of the dense questions and of closed alignment
    questions (balanced per family, as the answer phase draws them), ``per_video`` explanations at most."""
    facts = scene_facts(shown_scene(scene, kind))
    questions = render_questions(scene, question_prompts(asked, rng), kind, dense=True)
    dense = list({q.text: q for q in questions if q.kind == "dense"}.values())  # one per text: a repeat says the same
    closed = [q for q in questions if q.kind != "dense" and template_name(q) in EXPLAINED]
    closed = balanced(closed, rng) if scene.objects else rng.sample(closed, len(closed))
    out = [Reply(q, "score", q.expected) for q in dense]
    for q in dense + closed:
        text = reply_text(facts, q, "explain")
        if text is not None and len(out) < len(dense) + per_video:
            out.append(Reply(q, "explain", text))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Claims of a generated sentence, checked by the oracle

_COUNTS = {word: n for n, word in enumerate(NUMBER_WORDS) if n > 0}  # "a" claims one at least, "one" exactly one
_SHAPE_OF = {**{s: s for s in SHAPES}, **{s + "s": s for s in SHAPES}}


@dataclass
class Claims:
    """What a generated explanation states: the answer before its colon, the objects it says are there (count in
    words or None, colour or None, shape), and the shapes it says are not there."""

    answer: str
    present: list[tuple[int | None, str | None, str]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


def claims(text: str) -> Claims:
    """The claims of ``text`` ("yes: there is a small red cube and two blue spheres."): each shape word with the
    count and colour words just before it ("no cube": absent), or the colour just after "<shape> is" ("the cube is
    red")."""
    head, _, said = text.partition(":")
    words = re.findall(r"[a-z0-9]+", said.lower())
    out = Claims(head.strip().lower())
    for i, word in enumerate(words):
        shape = _SHAPE_OF.get(word)
        if shape is None:
            continue
        before = words[max(0, i - 3) : i]
        if before and before[-1] == "no":
            out.absent.append(shape)
            continue
        colour = next((w for w in reversed(before) if w in WORLD_COLORS), None)
        after = words[i + 1 : i + 3]
        if colour is None and len(after) == 2 and after[0] in ("is", "are") and after[1] in WORLD_COLORS:
            colour = after[1]
        count = next((_COUNTS[w] for w in reversed(before) if w in _COUNTS), None)
        out.present.append((count, colour, shape))
    return out


def confirmed(facts: Facts, question: Any, text: str) -> bool | None:
    """Whether the oracle's ``facts`` confirm every claim of the explanation ``text`` of ``question`` that they can
    check (None when they can check none): its answer, where the oracle answers the question, and each object it
    says is there (with its colour, and its count where stated in words) or not there."""
    said = claims(text)
    checks = []
    given = answer(facts, question)
    if given is not None and said.answer:
        checks.append(said.answer == given)
    for count, colour, shape in said.present:
        subject = {"shape": shape, **({"color": colour} if colour else {})}
        found = facts.count(subject)
        if found is not None:
            checks.append(found == count if count is not None else found > 0)
    for shape in said.absent:
        found = facts.count({"shape": shape})
        if found is not None:
            checks.append(found == 0)
    return all(checks) if checks else None
