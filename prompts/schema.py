"""The question schema shared by decomposers, critics and trainers.

A ``Question`` is one VQA item with a well-defined expected answer, so the critic's reward for it is always defined;
a ``QuestionSet`` is every question for one prompt plus the decomposer that produced it (name and config hash), so a
run directory records exactly which questions shaped the reward. Validation errors name the question id and field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from drf.errors import QuestionError

ASPECTS = ("alignment", "physics", "quality", "temporal")
KINDS = ("binary", "choice", "dense")
BINARY_ANSWERS = ("yes", "no")

_QUESTION_FIELDS = (
    "id",
    "aspect",
    "kind",
    "text",
    "expected",
    "options",
    "weight",
    "template",
    "slots",
    "token_weights",
)


@dataclass
class Question:
    """One question about a video.

    ``expected`` is "yes"/"no" for binary questions, one of ``options`` for choice questions, and the reference answer
    text for dense questions (scored by teacher-forced likelihood). ``token_weights`` optionally maps words of a dense
    answer to weights (content words over stop words).
    """

    id: str
    aspect: str
    kind: str
    text: str
    expected: str
    options: list[str] = field(default_factory=list)
    weight: float = 1.0
    template: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    token_weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def _fail(self, field_name: str, message: str) -> QuestionError:
        qid = self.id if isinstance(self.id, str) and self.id else "<no id>"
        return QuestionError(f"question {qid!r}: field {field_name!r} {message}")

    def validate(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise self._fail("id", "must be a non-empty string")
        if self.aspect not in ASPECTS:
            raise self._fail("aspect", f"is {self.aspect!r}; expected one of {', '.join(ASPECTS)}")
        if self.kind not in KINDS:
            raise self._fail("kind", f"is {self.kind!r}; expected one of {', '.join(KINDS)}")
        if not isinstance(self.text, str) or not self.text.strip():
            raise self._fail("text", "must be a non-empty string")
        if isinstance(self.expected, bool):  # YAML reads an unquoted yes/no (or true/false) as a boolean
            self.expected = "yes" if self.expected else "no"
        if not isinstance(self.expected, str) or not self.expected.strip():
            raise self._fail("expected", "must be a non-empty string (every question needs an expected answer)")
        if not isinstance(self.options, list) or not all(isinstance(o, str) and o.strip() for o in self.options):
            raise self._fail("options", "must be a list of non-empty strings")
        if self.kind == "binary":
            self.expected = self.expected.strip().lower()
            if self.expected not in BINARY_ANSWERS:
                raise self._fail("expected", f"is {self.expected!r}; a binary question expects 'yes' or 'no'")
        elif self.kind == "choice":
            if len(self.options) < 2:
                raise self._fail("options", "needs at least two options for a choice question")
            if len(set(self.options)) != len(self.options):
                raise self._fail("options", f"has duplicates: {self.options}")
            if self.expected not in self.options:
                raise self._fail("expected", f"is {self.expected!r}, which is not one of the options {self.options}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)):
            raise self._fail("weight", f"must be a number, got {self.weight!r}")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise self._fail("weight", f"must be finite and >= 0, got {self.weight!r}")
        self.weight = float(self.weight)
        if not isinstance(self.slots, dict):
            raise self._fail("slots", "must be a mapping")
        if self.token_weights is not None:
            if self.kind != "dense":
                raise self._fail("token_weights", "is only meaningful for dense questions")
            if not isinstance(self.token_weights, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                for k, v in self.token_weights.items()
            ):
                raise self._fail("token_weights", "must map words to finite non-negative numbers")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["token_weights"] is None:
            del data["token_weights"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "") -> Question:
        """Build a question from a mapping; ``where`` (e.g. ``file.yaml:12``) prefixes errors."""
        prefix = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise QuestionError(f"{prefix}a question must be a mapping, got {type(data).__name__}")
        qid = data.get("id", "<no id>")
        unknown = sorted(set(data) - set(_QUESTION_FIELDS))
        if unknown:
            raise QuestionError(
                f"{prefix}question {qid!r}: unknown field {unknown[0]!r}; valid fields are {', '.join(_QUESTION_FIELDS)}"
            )
        missing = [k for k in ("id", "aspect", "kind", "text", "expected") if k not in data]
        if missing:
            raise QuestionError(f"{prefix}question {qid!r}: missing field {missing[0]!r}")
        try:
            return cls(**dict(data))
        except QuestionError as err:
            raise QuestionError(f"{prefix}{err}") from None


@dataclass
class QuestionSet:
    """All questions for one prompt, with the decomposer that made them."""

    prompt: str
    questions: list[Question]
    decomposer: str = "manual"
    config_hash: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise QuestionError("question set: field 'prompt' must be a non-empty string")
        seen: set[str] = set()
        for q in self.questions:
            if q.id in seen:
                raise QuestionError(f"question {q.id!r}: duplicate id in the set for prompt {self.prompt!r}")
            seen.add(q.id)

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self):
        return iter(self.questions)

    @property
    def ids(self) -> list[str]:
        return [q.id for q in self.questions]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "decomposer": self.decomposer,
            "config_hash": self.config_hash,
            "questions": [q.to_dict() for q in self.questions],
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], where: str = "", question_wheres: Sequence[str] = ()
    ) -> QuestionSet:
        """``where`` prefixes errors about the set; ``question_wheres`` (one per question, e.g. each question's
        file:line) those about its questions, which otherwise get ``where`` too."""
        prefix = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise QuestionError(f"{prefix}a question set must be a mapping, got {type(data).__name__}")
        if "prompt" not in data:
            raise QuestionError(f"{prefix}question set: missing field 'prompt'")
        raw = data.get("questions", [])
        if not isinstance(raw, list):
            raise QuestionError(f"{prefix}question set: field 'questions' must be a list")
        wheres = list(question_wheres) if len(question_wheres) == len(raw) else [where] * len(raw)
        questions = [Question.from_dict(q, w) for q, w in zip(raw, wheres)]
        try:
            return cls(
                prompt=data["prompt"],
                questions=questions,
                decomposer=str(data.get("decomposer", "manual")),
                config_hash=str(data.get("config_hash", "")),
            )
        except QuestionError as err:
            raise QuestionError(f"{prefix}{err}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, where: str = "") -> QuestionSet:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise QuestionError(f"{where or '<json>'}:{err.lineno}: invalid JSON ({err.msg})") from None
        return cls.from_dict(data, where)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, where: str = "") -> QuestionSet:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            line = getattr(getattr(err, "problem_mark", None), "line", None)
            loc = f"{where or '<yaml>'}:{line + 1}" if line is not None else (where or "<yaml>")
            raise QuestionError(f"{loc}: invalid YAML ({getattr(err, 'problem', err)})") from None
        return cls.from_dict(data, where)

