"""The ``questions`` config section: which decomposer turns prompts into questions, and how."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from drf.errors import invalid
from prompts.schema import ASPECTS, KINDS

FALLBACKS = ("rule", "error")
# Names ``questions.decomposer`` accepts: the built-in decomposers; prompts.registry.register_decomposer adds more.
DECOMPOSER_NAMES = {"rule", "llm", "file"}


@dataclass
class QuestionsConfig:
    """How prompts become question sets (the ``questions:`` section of a run config)."""

    decomposer: str = field(
        default="rule",
        metadata={
            "help": "rule (deterministic parser + templates), llm (a causal LM writes JSON questions), file, "
            "or a name added with prompts.registry.register_decomposer."
        },
    )
    file: str = field(
        default="",
        metadata={
            "path": "file",
            "help": "YAML or JSONL file of hand-authored question sets keyed by prompt (decomposer: file).",
        },
    )
    llm_model: str = field(
        default="",
        metadata={
            "path": "model",
            "help": "Local folder or hub id of a transformers causal LM with a chat template (decomposer: llm); "
            "'tiny' builds a tiny random model offline, useful only to exercise retries and the fallback.",
        },
    )
    max_new_tokens: int = field(default=768, metadata={"help": "Token budget of one llm answer."})
    max_retries: int = field(
        default=2, metadata={"help": "Extra llm attempts after invalid JSON; the error is fed back each time."}
    )
    fallback: Literal["rule", "error"] = field(
        default="rule",
        metadata={"help": "When the llm never yields valid questions: 'rule' falls back to the rule decomposer, "
                  "'error' raises QuestionError."},
    )  # fmt: skip
    templates_dir: str = field(
        default="",
        metadata={
            "path": "file",
            "help": "Folder of question templates (*.j2, one per aspect); empty means the packaged templates.",
        },
    )
    aspects: list[str] = field(
        default_factory=lambda: list(ASPECTS),
        metadata={"help": f"Aspects to ask about, any of {', '.join(ASPECTS)}."},
    )
    aspect_weights: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(ASPECTS, 1.0),
        metadata={"help": "Weight of each aspect when per-aspect rewards are combined; an aspect at 0 is not asked."},
    )
    kinds: list[str] = field(
        default_factory=lambda: list(KINDS),
        metadata={
            "help": f"Question kinds to ask, any of {', '.join(KINDS)}. A dense answer's log-prob sums over its tokens, "
            "so a caption can outweigh every yes/no question; leave dense out to train on closed answers only."
        },
    )
    negatives: bool = field(
        default=True,
        metadata={"help": "Add counterfactual questions expected 'no' (absent colours/shapes, opposite directions)."},
    )
    max_questions: int = field(
        default=64,
        metadata={
            "help": "Most questions one prompt may yield (the shipped prompts yield at most 36); a longer prompt "
            "is refused, naming its line, before training starts, so the critic's memory stays bounded."
        },
    )
    cache: bool = field(
        default=True,
        metadata={"help": "Decompose each prompt once per run and keep the exact questions in <run>/questions.jsonl."},
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.decomposer not in DECOMPOSER_NAMES:
            raise invalid(
                "decomposer", f"is {self.decomposer!r}; expected one of {', '.join(sorted(DECOMPOSER_NAMES))}"
            )
        if self.fallback not in FALLBACKS:
            raise invalid("fallback", f"is {self.fallback!r}; expected one of {', '.join(FALLBACKS)}")
        for key, names in (("aspects", list(self.aspects)), ("aspect_weights", list(self.aspect_weights))):
            unknown = [a for a in names if a not in ASPECTS]
            if unknown:
                raise invalid(key, f"has unknown aspect {unknown[0]!r}; expected one of {', '.join(ASPECTS)}")
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            what = f"has unknown kind {unknown[0]!r}" if unknown else "is empty"
            raise invalid("kinds", f"{what}; expected some of {', '.join(KINDS)}")
        for aspect, weight in self.aspect_weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise invalid(f"aspect_weights.{aspect}", f"must be a number >= 0, got {weight!r}")
        if not self.active_aspects():
            raise invalid("aspects", "leaves no aspect to ask about; keep at least one with weight > 0")
        if isinstance(self.max_questions, bool) or not isinstance(self.max_questions, int) or self.max_questions < 1:
            raise invalid("max_questions", f"must be an integer >= 1, got {self.max_questions!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise invalid("max_retries", f"must be an integer >= 0, got {self.max_retries!r}")
        if self.decomposer == "file" and not self.file:
            raise invalid("file", "is empty; the file decomposer needs a YAML or JSONL question file")
        if self.decomposer == "llm" and not self.llm_model:
            raise invalid("llm_model", "is empty; give a model folder or hub id (or 'tiny') for the llm decomposer")
        if self.templates_dir and not Path(self.templates_dir).is_dir():
            raise invalid("templates_dir", f"{self.templates_dir!r} is not a folder")

    def active_aspects(self) -> list[str]:
        """Aspects in the configured order whose weight is above zero."""
        return [a for a in self.aspects if self.aspect_weights.get(a, 1.0) > 0]
