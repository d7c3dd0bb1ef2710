"""The one entry point from a prompt to its questions: ``decompose(prompt, config) -> QuestionSet``.

Decomposers register by name so a config names one (``questions.decomposer``); each takes the stripped prompt and
the config and returns a validated QuestionSet that records its name. Each also names the inputs its questions depend
on outside the config, so :func:`config_hash`, the question cache's key, changes exactly when its questions may.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from drf.errors import ConfigError, DRFError, QuestionError
from drf.run_dir import RunDir
from prompts import files, llm, rule
from prompts.cache import QuestionCache
from prompts.config import DECOMPOSER_NAMES, QuestionsConfig
from prompts.fingerprint import fingerprint
from prompts.parse import check_prompt
from prompts.schema import QuestionSet


def no_inputs(config: QuestionsConfig) -> Mapping[str, str]:
    """For a decomposer whose questions depend on the config alone."""
    return {}


@dataclass(frozen=True)
class Decomposer:
    """A decomposer and what, besides the config, its questions depend on (digests of files it reads, ...)."""

    decompose: Callable[[str, QuestionsConfig], QuestionSet]
    inputs: Callable[[QuestionsConfig], Mapping[str, str]] = no_inputs


DECOMPOSERS: dict[str, Decomposer] = {
    "rule": Decomposer(rule.decompose_rule, rule.inputs),
    "llm": Decomposer(llm.decompose_llm, llm.inputs),
    "file": Decomposer(files.decompose_file, files.inputs),
}


def register_decomposer(
    name: str,
    fn: Callable[[str, QuestionsConfig], QuestionSet],
    inputs: Callable[[QuestionsConfig], Mapping[str, str]] = no_inputs,
) -> None:
    """Make ``fn`` available as ``questions.decomposer: name``; ``inputs(config)`` names what else its questions
    depend on (e.g. ``{"table": file_digest(path)}``), so that the question cache sees it change."""
    DECOMPOSERS[name] = Decomposer(fn, inputs)
    DECOMPOSER_NAMES.add(name)


def config_hash(config: QuestionsConfig) -> str:
    """The fingerprint of ``config``'s decomposition: the config and its decomposer's inputs."""
    return fingerprint(config, _decomposer(config).inputs(config))


def _decomposer(config: QuestionsConfig) -> Decomposer:
    if config.decomposer not in DECOMPOSERS:
        raise ConfigError(f"questions.decomposer is {config.decomposer!r}; expected one of {', '.join(DECOMPOSERS)}")
    return DECOMPOSERS[config.decomposer]


def decompose(
    prompt: str,
    config: QuestionsConfig | None = None,
    cache: QuestionCache | None = None,
    cap: str = "questions.max_questions",
) -> QuestionSet:
    """Questions for ``prompt``; with a cache, a prompt already decomposed under the same config is not redone.
    ``cap``: how the caller's user sets ``config.max_questions`` (a config key, or a command's flag), for the error
    a prompt with too many questions gets."""
    config = config or QuestionsConfig()
    text = check_prompt(prompt)
    decomposer = _decomposer(config)
    key = config_hash(config) if cache is not None and config.cache else None
    qset = cache.get(text, key) if key is not None else None
    if qset is None:
        qset = decomposer.decompose(text, config)
        if any(q.kind not in config.kinds for q in qset.questions):
            qset = replace(qset, questions=[q for q in qset.questions if q.kind in config.kinds])
        if key is not None:
            cache.put(qset, key)
    if len(qset.questions) > config.max_questions:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise QuestionError(
            f"prompt {shown!r} ({len(text)} characters) yields {len(qset.questions)} questions, more than "
            f"{cap}={config.max_questions}; shorten or split it, or raise {cap}"
        )
    return qset


def decompose_all(prompts: Iterable[str], config: QuestionsConfig | None = None, run_dir: str | Path | None = None,
                  where: Mapping[str, str] | None = None) -> list[QuestionSet]:  # fmt: skip
    """Question sets for many prompts; with ``run_dir`` they are cached in (and saved to) ``run_dir/questions.jsonl``.
    ``where`` maps a prompt to its file:line, which then starts the message of an error about that prompt."""
    config = config or QuestionsConfig()
    cache = QuestionCache(RunDir(run_dir).questions) if run_dir is not None else None
    sets = []
    for prompt in prompts:
        try:
            sets.append(decompose(prompt, config, cache))
        except DRFError as err:
            if where is None or prompt not in where:
                raise
            raise type(err)(f"{where[prompt]}: {err}") from None
    return sets
