"""Rule decomposer: the parser's slots rendered into questions by the templates; deterministic and model-free."""

from __future__ import annotations

from prompts.config import QuestionsConfig
from prompts.fingerprint import fingerprint
from prompts.parse import check_prompt, parse_prompt
from prompts.schema import Question, QuestionSet
from prompts.templates import render_questions, templates_digest


def inputs(config: QuestionsConfig) -> dict[str, str]:
    """What the questions depend on besides the config: the templates' contents."""
    return {"templates": templates_digest(config.templates_dir)}


def decompose_rule(prompt: str, config: QuestionsConfig) -> QuestionSet:
    """Prompt → slots → the questions rendered by the templates of ``config.templates_dir``, each distinct question
    once (a prompt that mentions the same object five times asks about it once, under its first id)."""
    text = check_prompt(prompt)
    questions = distinct(render_questions(parse_prompt(text), config))
    return QuestionSet(
        prompt=text, questions=questions, decomposer="rule", config_hash=fingerprint(config, inputs(config))
    )


def distinct(questions: list[Question]) -> list[Question]:
    """The first question of each distinct text: the critic answers a repeat identically, so asking it again only
    multiplies its weight in the reward and the critic's cost."""
    seen: set[str] = set()
    kept = []
    for question in questions:
        if question.text not in seen:
            seen.add(question.text)
            kept.append(question)
    return kept
