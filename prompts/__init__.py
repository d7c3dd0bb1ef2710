"""Question sets for prompts: schema, decomposers (rule, llm, file), jinja2 templates, cache and lint.

``from prompts import decompose, QuestionsConfig`` is the short way in; the names load on first use so that
``drf --help`` (which imports ``prompts.commands``) stays fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "decompose": "prompts.registry",
    "decompose_all": "prompts.registry",
    "QuestionCache": "prompts.cache",
    "QuestionsConfig": "prompts.config",
    "config_hash": "prompts.registry",
    "Question": "prompts.schema",
    "QuestionSet": "prompts.schema",
    "parse_prompt": "prompts.parse",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'prompts' has no attribute {name!r}")
