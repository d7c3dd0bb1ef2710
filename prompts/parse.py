"""The prompt parser: a deterministic, model-free reading of a prompt into slots, which the rule decomposer renders
into questions through the templates.

The toy world's prompt grammar is covered completely, so the toy-world oracle can answer every question from its
``slots`` without reading the text; free text gets whatever the word lists recognise, and any prompt at all still gets
the generic physics, quality and temporal questions.

Grammar (case-insensitive; words outside the lists are skipped)::

    prompt    := clause ("," | "and" | "while" | "as" | ";" | ".")* ...
    subject   := [count] [size] [colour] [attribute]* noun          e.g. "two large blue spheres"
    count     := "a" | "an" | "one" | "the" (=1, or a reference to an earlier subject) | "two" | "three" | ... | digits
    motion    := subject ("moves" | "rolls" | "slides" | ...) direction
    direction := ["to" "the"] ("left" | "right") | "toward(s) the camera" | "away" ["from the camera"]
    relation  := subject ["is"] ("left of" | "to the left of" | "right of" | "to the right of" | "in front of"
                 | "behind" | "next to" | "beside" | "above" | "below" | "under") subject
    camera    := "the camera" ("pans" ("left"|"right") | ("dollies"|"zooms") ("in"|"out")
                 | "moves" ("forward"|"backward") | "orbits" ("left"|"right") | "is still" | "is static")
                 | ("static" | "still" | "fixed") "camera"
    setting   := preposition ["a"|"an"|"the"] [adjective]* setting-noun    e.g. "on a checkered floor", "over a lake"
                 (prepositions: on in at inside down along through across over above near by)
    style     := style word or phrase anywhere ("cinematic", "watercolor", "slow motion", ...)

Toy-world vocabulary (stable: the toy-world renderer and oracle rely on it):

- shapes: cube, sphere (plurals cubes, spheres); "cylinder" is an ordinary noun
- colours: red, yellow, green, blue (the toy palette: counterfactual colour swaps stay inside it), and purple (also
  "magenta"), orange, cyan, white
- sizes: small (also "tiny", "little"), large (also "big", "huge")
- counts: a, an, one, the, two, three, four, five, digits
- object motion directions (canonical): left, right, toward, away
- relations (canonical): left_of, right_of, in_front_of, behind, next_to, above, below
- camera (canonical): pan_left, pan_right, dolly_in, dolly_out ("zooms in/out", "moves forward/backward" are dolly),
  orbit_left, orbit_right, static
- setting: "checkered floor" (any setting noun is accepted)

Example: "a small red cube left of a blue sphere on a checkered floor, the camera pans right" gives subjects
``[{noun: cube, shape: cube, color: red, size: small, count: 1}, {noun: sphere, shape: sphere, color: blue, count: 1}]``,
relation ``left_of`` (0 → 1), setting "checkered floor" and camera ``pan_right``.

Slots (the output of :func:`parse_prompt`, JSON-serialisable)::

    prompt: str
    subjects:  [{noun, plural, shape?, color?, size?, count?, attributes: [str]}]   shape only for toy shapes
    motions:   [{subject: int, direction: left|right|toward|away, verb: str}]
    actions:   [{subject: int | None, verb: str}]                                    free-text verbs, "-ing" form
    relations: [{relation: str, a: int, b: int}]                                    indices into subjects
    camera:    str | None
    setting:   str | None
    style:     [str]
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from drf.errors import InputError
from prompts.words import COLORS, TOY_SHAPES, plural_of

# Free-text colours beyond the toy palette; "magenta" folds into the toy palette's purple, "grey" into "gray".
_COLOR_WORDS = {c: c for c in COLORS} | {
    "magenta": "purple",
    "black": "black",
    "brown": "brown",
    "pink": "pink",
    "gray": "gray",
    "grey": "gray",
    "golden": "gold",
    "gold": "gold",
    "silver": "silver",
}
_SIZE_WORDS = {"small": "small", "tiny": "small", "little": "small", "large": "large", "big": "large", "huge": "large"}
_COUNT_WORDS = {
    "a": 1, "an": 1, "one": 1, "the": 1, "single": 1,
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_ATTRIBUTE_WORDS = frozenset(
    "wooden metal metallic shiny glass plastic fluffy furry old young elderly happy sad wet rusty bright dark "
    "transparent striped spotted glowing cute tall short fat thin smiling running".split()
)
# Countable nouns recognised in free text (singular form); the toy shapes come first.
_NOUNS = TOY_SHAPES + tuple(
    "cylinder ball box car truck bus bicycle bike motorcycle train boat ship airplane plane robot dog cat horse cow sheep bird "
    "fish duck rabbit bear lion tiger elephant monkey fox wolf deer butterfly man woman person child boy girl baby "
    "chef astronaut dancer player musician couple teddy panda penguin dragon unicorn tree flower house building "
    "chair table cup mug bottle apple banana orange candle lamp book guitar piano umbrella kite balloon "
    "rocket hat leaf".split()
)
_SETTING_NOUNS = frozenset(
    "floor ground beach street road forest field meadow room kitchen city park desert snow ocean sea lake river "
    "mountain mountains sky table stage studio garden space background grass water sand office library bedroom "
    "classroom cafe restaurant market bridge farm jungle cave underwater village town countryside".split()
)
_SETTING_PREPOSITIONS = frozenset("on in at inside down along through across over above near by".split())
_SETTING_ADJECTIVES = frozenset(
    "checkered checkerboard tiled wooden grassy sandy snowy busy empty quiet dark sunny rainy foggy white black gray "
    "grey green blue red stone marble concrete city night crowded small large big open".split()
)
_STYLE_PHRASES = (
    ("slow", "motion"), ("black", "and", "white"), ("oil", "painting"), ("pixel", "art"), ("3d", "render"),
    ("time", "lapse"), ("cinematic",), ("photorealistic",), ("realistic",), ("anime",), ("cartoon",),
    ("watercolor",), ("watercolour",), ("vintage",), ("4k",), ("hdr",), ("timelapse",), ("claymation",),
    ("sketch",), ("noir",),
)  # fmt: skip
_STYLE_CANONICAL = {"watercolour": "watercolor", "timelapse": "time lapse"}
_MOTION_VERBS = frozenset(
    "move moves moving rolls roll rolling slides slide sliding drifts drift drifting travels travel travelling "
    "traveling glides glide gliding".split()
)
# Free-text action verbs: any of these forms maps to the "-ing" form given first.
_ACTION_FORMS = {
    form: forms.split()[0]
    for forms in (
        "running runs run", "walking walks walk", "flying flies fly", "jumping jumps jump", "dancing dances dance",
        "swimming swims swim", "eating eats eat", "playing plays play", "sitting sits sit", "standing stands stand",
        "sleeping sleeps sleep", "falling falls fall", "spinning spins spin", "rotating rotates rotate",
        "bouncing bounces bounce", "riding rides ride", "driving drives drive", "cooking cooks cook",
        "singing sings sing", "reading reads read", "waving waves wave", "climbing climbs climb",
        "floating floats float", "burning burns burn", "melting melts melt", "drinking drinks drink",
    )
    for form in forms.split()
}
_RELATION_PHRASES = (
    (("to", "the", "left", "of"), "left_of"), (("left", "of"), "left_of"),
    (("to", "the", "right", "of"), "right_of"), (("right", "of"), "right_of"),
    (("in", "front", "of"), "in_front_of"), (("behind",), "behind"), (("next", "to"), "next_to"),
    (("beside",), "next_to"), (("above",), "above"), (("over",), "above"), (("below",), "below"),
    (("under",), "below"), (("beneath",), "below"),
)  # fmt: skip
_CAMERA_VERBS = {
    "pan": "pan", "pans": "pan", "panning": "pan",
    "dolly": "dolly", "dollies": "dolly", "dollying": "dolly",
    "zoom": "dolly", "zooms": "dolly", "zooming": "dolly",
    "orbit": "orbit", "orbits": "orbit", "orbiting": "orbit",
    "move": "move", "moves": "move", "moving": "move",
}  # fmt: skip
_CAMERA_DIRECTIONS = {
    "pan": {"left": "pan_left", "right": "pan_right"},
    "orbit": {"left": "orbit_left", "right": "orbit_right"},
    "dolly": {"in": "dolly_in", "out": "dolly_out", "forward": "dolly_in", "backward": "dolly_out"},
    "move": {
        "forward": "dolly_in", "backward": "dolly_out", "backwards": "dolly_out", "in": "dolly_in",
        "left": "pan_left", "right": "pan_right",
    },  # fmt: skip
}
_STATIC_WORDS = frozenset({"static", "still", "fixed", "stationary", "locked"})
_ADVERBS = frozenset("slowly quickly gently smoothly fast steadily around across to the".split())


@dataclass
class _Span:
    start: int
    end: int  # exclusive


@dataclass
class _Subject:
    noun: str
    plural: str
    span: _Span
    color: str | None = None
    size: str | None = None
    count: int | None = None
    attributes: list[str] = field(default_factory=list)

    def to_slots(self) -> dict[str, Any]:
        data: dict[str, Any] = {"noun": self.noun, "plural": self.plural}
        if self.noun in TOY_SHAPES:
            data["shape"] = self.noun
        for key in ("color", "size", "count"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        data["attributes"] = list(self.attributes)
        return data


_NOUN_FORMS = {noun: (noun, False) for noun in _NOUNS} | {plural_of(noun): (noun, True) for noun in _NOUNS}


def tokenize(prompt: str) -> list[str]:
    """Lower-case words; punctuation is dropped except commas and full stops, kept as clause breaks."""
    text = unicodedata.normalize("NFKC", prompt).casefold()
    tokens: list[str] = []
    for match in re.finditer(r"[^\W_]+(?:'[^\W_]+)?|[,.;]", text):
        tokens.append(match.group(0))
    return tokens


def _match(tokens: list[str], i: int, phrase: tuple[str, ...]) -> bool:
    return tuple(tokens[i : i + len(phrase)]) == phrase


class _Parser:
    def __init__(self, prompt: str) -> None:
        self.prompt = prompt
        self.tokens = tokenize(prompt)
        self.used = [False] * len(self.tokens)
        self.subjects: list[_Subject] = []
        self.mentions: list[tuple[_Span, int]] = []  # every mention (first or coreferent) → subject index
        self.motions: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.relations: list[dict[str, Any]] = []
        self.camera: str | None = None
        self.setting: str | None = None
        self.style: list[str] = []

    def _consume(self, start: int, end: int) -> None:
        for i in range(start, end):
            self.used[i] = True

    def parse(self) -> dict[str, Any]:
        self._parse_camera()
        self._parse_style()
        self._parse_setting()
        self._parse_subjects()
        self._parse_relations()
        self._parse_motions_and_actions()
        return {
            "prompt": self.prompt,
            "subjects": [s.to_slots() for s in self.subjects],
            "motions": self.motions,
            "actions": self.actions,
            "relations": self.relations,
            "camera": self.camera,
            "setting": self.setting,
            "style": self.style,
        }

    def _parse_camera(self) -> None:
        toks = self.tokens
        for i, tok in enumerate(toks):
            if self.camera is not None:
                return
            if tok == "camera":
                before = toks[i - 1] if i > 0 else ""
                if before in _STATIC_WORDS:
                    self.camera = "static"
                    self._consume(i - 1, i + 1)
                    continue
                j = i + 1
                if j < len(toks) and toks[j] in ("is", "stays", "remains", "holds") and j + 1 < len(toks):
                    if toks[j + 1] in _STATIC_WORDS:
                        self.camera = "static"
                        self._consume(i, j + 2)
                        continue
                self._camera_verb(i + 1, requires_camera=False)
            elif tok in _CAMERA_VERBS and _CAMERA_VERBS[tok] != "move":
                self._camera_verb(i, requires_camera=True)

    def _camera_verb(self, i: int, requires_camera: bool) -> None:
        """Read "[adverb] verb [adverb]* direction" starting at ``i``; a bare verb must not belong to a subject."""
        toks = self.tokens
        while i < len(toks) and toks[i] in _ADVERBS:
            i += 1
        if i >= len(toks) or toks[i] not in _CAMERA_VERBS:
            return
        kind = _CAMERA_VERBS[toks[i]]
        if requires_camera and kind == "move":
            return
        for j in range(i + 1, min(i + 5, len(toks))):
            if toks[j] in _CAMERA_DIRECTIONS[kind]:
                self.camera = _CAMERA_DIRECTIONS[kind][toks[j]]
                self._consume(i, j + 1)
                return
            if toks[j] not in _ADVERBS:
                return

    def _parse_style(self) -> None:
        for i in range(len(self.tokens)):
            for phrase in _STYLE_PHRASES:
                if not self.used[i] and _match(self.tokens, i, phrase):
                    name = _STYLE_CANONICAL.get(" ".join(phrase), " ".join(phrase))
                    if name not in self.style:
                        self.style.append(name)
                    self._consume(i, i + len(phrase))

    def _parse_setting(self) -> None:
        toks = self.tokens
        for i, tok in enumerate(toks):
            if tok not in _SETTING_PREPOSITIONS or self.used[i] or self.setting is not None:
                continue
            j = i + 1
            if j < len(toks) and toks[j] in ("a", "an", "the"):
                j += 1
            k = j
            while k < len(toks) and toks[k] in _SETTING_ADJECTIVES and k - j < 3:
                k += 1
            if k < len(toks) and toks[k] in _SETTING_NOUNS and not self.used[k]:
                self.setting = " ".join(toks[j : k + 1])
                self._consume(i, k + 1)

    def _parse_subjects(self) -> None:
        toks = self.tokens
        for i, tok in enumerate(toks):
            if self.used[i] or tok not in _NOUN_FORMS:
                continue
            if tok in _COLOR_WORDS and i + 1 < len(toks) and toks[i + 1] in _NOUN_FORMS:
                continue  # "an orange cube": the colour, not the fruit
            noun, is_plural = _NOUN_FORMS[tok]
            color = size = count = None
            attributes: list[str] = []
            determiner = None
            start = i
            j = i - 1
            while j >= 0 and not self.used[j]:
                word = toks[j]
                if word in _COLOR_WORDS and color is None and size is None and count is None:
                    color = _COLOR_WORDS[word]
                elif word in _SIZE_WORDS and size is None and count is None:
                    size = _SIZE_WORDS[word]
                elif word in _ATTRIBUTE_WORDS and count is None:
                    attributes.insert(0, word)
                elif word in _COUNT_WORDS and count is None:
                    determiner = word
                    count = _COUNT_WORDS[word]
                elif word.isdecimal() and count is None and len(word) <= 3:
                    count = int(word)
                else:
                    break
                start = j
                j -= 1
                if count is not None:
                    break
            if is_plural and determiner in ("a", "an", "the", "one", "single"):
                count = None
            if count == 0:
                count = None
            span = _Span(start, i + 1)
            self._consume(start, i + 1)
            previous = self._coreferent(noun, color, size) if determiner == "the" else None
            if previous is not None:
                self.mentions.append((span, previous))
                continue
            self.subjects.append(
                _Subject(noun, plural_of(noun), span, color=color, size=size, count=count, attributes=attributes)
            )
            self.mentions.append((span, len(self.subjects) - 1))

    def _coreferent(self, noun: str, color: str | None, size: str | None) -> int | None:
        """"the red cube" after "a red cube" refers back to it instead of adding a second cube."""
        for index, subject in enumerate(self.subjects):
            if subject.noun != noun:
                continue
            if color is not None and subject.color != color:
                continue
            if size is not None and subject.size != size:
                continue
            return index
        return None

    def _mention_before(self, i: int) -> int | None:
        """The subject mentioned last before token ``i`` within the same clause ("it" counts as the last one)."""
        best = None
        for span, index in self.mentions:
            if span.end <= i and not any(self.tokens[k] in (".", ";") for k in range(span.end, i)):
                if best is None or span.end > best[0]:
                    best = (span.end, index)
        for k in range(i - 1, -1, -1):
            if self.tokens[k] in ("it", "they") and (best is None or k >= best[0]):
                return self._last_mention_before(k)
        return best[1] if best else None

    def _last_mention_before(self, i: int) -> int | None:
        candidates = [(span.end, index) for span, index in self.mentions if span.end <= i]
        return max(candidates)[1] if candidates else None

    def _mention_after(self, i: int) -> int | None:
        after = [(span.start, index) for span, index in self.mentions if span.start >= i]
        if not after:
            return None
        start, index = min(after)
        gap = self.tokens[i:start]
        return index if len(gap) <= 2 and not any(t in (",", ".", ";") for t in gap) else None

    def _parse_relations(self) -> None:
        toks = self.tokens
        for i in range(len(toks)):
            if self.used[i]:
                continue
            for phrase, relation in _RELATION_PHRASES:
                if not _match(toks, i, phrase) or any(self.used[i : i + len(phrase)]):
                    continue
                a = self._mention_before(i)
                b = self._mention_after(i + len(phrase))
                if a is not None and b is not None and a != b:
                    entry = {"relation": relation, "a": a, "b": b}
                    if entry not in self.relations:
                        self.relations.append(entry)
                    self._consume(i, i + len(phrase))
                break

    def _parse_motions_and_actions(self) -> None:
        toks = self.tokens
        for i, tok in enumerate(toks):
            if self.used[i]:
                continue
            if tok in _MOTION_VERBS:
                direction, end = self._motion_direction(i + 1)
                subject = self._mention_before(i)
                if direction is not None and subject is not None:
                    entry = {"subject": subject, "direction": direction, "verb": tok}
                    if not any(m["subject"] == subject for m in self.motions):
                        self.motions.append(entry)
                    self._consume(i, end)
                    continue
            if tok in _ACTION_FORMS:
                verb = _ACTION_FORMS[tok]
                subject = self._mention_before(i)
                entry = {"subject": subject, "verb": verb}
                if entry not in self.actions:
                    self.actions.append(entry)
                self._consume(i, i + 1)

    def _motion_direction(self, i: int) -> tuple[str | None, int]:
        """Read a direction after a motion verb: "left", "to the right", "toward the camera", "away (from the camera)"."""
        toks = self.tokens
        while i < len(toks) and toks[i] in ("slowly", "quickly", "gently", "smoothly", "steadily", "fast"):
            i += 1
        for phrase, direction in (
            (("to", "the", "left"), "left"), (("to", "the", "right"), "right"), (("left",), "left"),
            (("right",), "right"), (("leftward",), "left"), (("rightward",), "right"),
            (("toward", "the", "camera"), "toward"), (("towards", "the", "camera"), "toward"),
            (("toward", "the", "viewer"), "toward"), (("towards", "the", "viewer"), "toward"),
            (("forward",), "toward"), (("away", "from", "the", "camera"), "away"), (("away",), "away"),
            (("backward",), "away"),
        ):  # fmt: skip
            if _match(toks, i, phrase):
                return direction, i + len(phrase)
        return None, i


def parse_prompt(prompt: str) -> dict[str, Any]:
    """Parse ``prompt`` into slots (see the module docstring); never fails on non-empty text."""
    check_prompt(prompt)
    return _Parser(prompt.strip()).parse()


def check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InputError(f"prompt is empty: {prompt!r}; give a description of the video to decompose into questions")
    return prompt.strip()
