"""The one entry point from a prompt to its questions: ``decompose(prompt, config) -> QuestionSet``.

Decomposers register by name so a config names one (``questions.decomposer``); each takes the stripped prompt and
the config and returns a validated QuestionSet that records its name and the config hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from drf.errors import ConfigError
from prompts.rule import check_prompt
from prompts.schema import QuestionSet

if TYPE_CHECKING:
    from prompts.cache import QuestionCache
    from prompts.config import QuestionsConfig

Decomposer = Callable[[str, "QuestionsConfig"], QuestionSet]


def _rule(prompt: str, config: QuestionsConfig) -> QuestionSet:
    from prompts.rule import decompose_rule

    return decompose_rule(prompt, config)


def _llm(prompt: str, config: QuestionsConfig) -> QuestionSet:
    from prompts.llm import decompose_llm

    return decompose_llm(prompt, config)


def _file(prompt: str, config: QuestionsConfig) -> QuestionSet:
    from prompts.files import decompose_file

    return decompose_file(prompt, config)


DECOMPOSERS: dict[str, Decomposer] = {"rule": _rule, "llm": _llm, "file": _file}


def register_decomposer(name: str, fn: Decomposer) -> None:
    """Make ``fn`` available as ``questions.decomposer: name``."""
    DECOMPOSERS[name] = fn


def decompose(prompt: str, config: QuestionsConfig | None = None, cache: QuestionCache | None = None) -> QuestionSet:
    """Questions for ``prompt``; with a cache, a prompt already decomposed under the same config is not redone."""
    from prompts.config import QuestionsConfig

    config = config or QuestionsConfig()
    text = check_prompt(prompt)
    if config.decomposer not in DECOMPOSERS:
        raise ConfigError(f"questions.decomposer is {config.decomposer!r}; expected one of {', '.join(DECOMPOSERS)}")
    use_cache = cache is not None and config.cache
    if use_cache:
        hit = cache.get(text, config)
        if hit is not None:
            return hit
    qset = DECOMPOSERS[config.decomposer](text, config)
    if any(q.kind not in config.kinds for q in qset.questions):
        qset = replace(qset, questions=[q for q in qset.questions if q.kind in config.kinds])
    if use_cache:
        cache.put(qset, config)
    return qset


def decompose_all(prompts: Iterable[str], config: QuestionsConfig | None = None,
                  run_dir: str | Path | None = None) -> list[QuestionSet]:  # fmt: skip
    """Question sets for many prompts; with ``run_dir`` they are cached in (and saved to) ``run_dir/questions.jsonl``."""
    from prompts.cache import QuestionCache
    from prompts.config import QuestionsConfig

    config = config or QuestionsConfig()
    cache = QuestionCache(Path(run_dir) / "questions.jsonl") if run_dir is not None else None
    return [decompose(p, config, cache) for p in prompts]
