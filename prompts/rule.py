"""Rule decomposer: the parser's slots rendered into questions by the templates; deterministic and model-free."""

from __future__ import annotations

from prompts.config import QuestionsConfig
from prompts.fingerprint import fingerprint
from prompts.parse import check_prompt, parse_prompt
from prompts.schema import QuestionSet
from prompts.templates import render_questions, templates_digest


def inputs(config: QuestionsConfig) -> dict[str, str]:
    """What the questions depend on besides the config: the templates' contents."""
    return {"templates": templates_digest(config.templates_dir)}


def decompose_rule(prompt: str, config: QuestionsConfig) -> QuestionSet:
    """Prompt → slots → the questions rendered by the templates of ``config.templates_dir``."""
    text = check_prompt(prompt)
    questions = render_questions(parse_prompt(text), config)
    return QuestionSet(
        prompt=text, questions=questions, decomposer="rule", config_hash=fingerprint(config, inputs(config))
    )
