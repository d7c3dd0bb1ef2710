"""What a trainer reaches by name rather than by import: evaluation judges and the end-of-run report.

Both live in the application layer above the trainers (``drf.toyworld``, ``drf.report``), so the entries here are
import paths, resolved only when a run uses them; ``register_judge`` adds a judge of one's own (a callable or the
import path of one).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from drf.errors import ConfigError

# A judge: ``judge(video [T,3,H,W] in [0,1], question_set) -> {"scores": {question id: 0 or 1}, ...}`` over the
# questions it can measure (``"alignment"`` may add the judge's own alignment score, see trainers.evaluation).
Judge = Callable[[Any, Any], dict[str, Any]]
JUDGES: dict[str, str | Judge] = {"toyworld": "drf.toyworld.oracle:score"}
# ``write_report(run_dir, critic=..., max_videos=...) -> path`` of the HTML report written when training ends.
REPORT_WRITER = "drf.report.builder:write_report"


def register_judge(name: str, judge: str | Judge) -> None:
    """Make ``judge`` (a callable, or "module:callable") available as ``<recipe>.judge: name``."""
    JUDGES[name] = judge


def resolve(entry: str | Callable[..., Any]) -> Callable[..., Any]:
    """A callable from itself or from its "module:attribute" import path."""
    if callable(entry):
        return entry
    module, _, attribute = entry.partition(":")
    return getattr(importlib.import_module(module), attribute)


def load_judge(name: str) -> Judge | None:
    """The judge a config names ("" for none)."""
    if not name:
        return None
    if name not in JUDGES:
        raise ConfigError(f"judge {name!r} is unknown; choose one of {', '.join(repr(j) for j in ['', *JUDGES])}")
    return resolve(JUDGES[name])
