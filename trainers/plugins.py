"""What a trainer reaches by name rather than by import: evaluation judges and end-of-run reporters.

Both live in the application layer above the trainers (``drf.toyworld``, ``drf.report``), so they are registered from
there, when their command modules load (``drf.cli.load_commands``; ``drf.toyworld.commands`` registers the
``toyworld`` judge, ``drf.report.commands`` the HTML report): a trainer never names a higher module, not even as a
string. An entry is a callable or the "module:callable" import path of one, resolved only when a run uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from drf.errors import ConfigError

# A judge: ``judge(video [T,3,H,W] in [0,1], question_set) -> {"scores": {question id: 0 or 1}, ...}`` over the
# questions it can measure (``"alignment"`` may add the judge's own alignment score, see trainers.evaluation).
Judge = Callable[[Any, Any], dict[str, Any]]
JUDGES: dict[str, str | Judge] = {}
# name -> ``write(run_dir, critic=..., max_videos=...) -> path`` of a file written when training ends (with
# ``logging.report``); the run prints each path.
REPORTERS: dict[str, str | Callable[..., Any]] = {}


def register_judge(name: str, judge: str | Judge) -> None:
    """Make ``judge`` (a callable, or "module:callable") available as ``<recipe>.judge: name``."""
    JUDGES[name] = judge


def register_reporter(name: str, write: str | Callable[..., Any]) -> None:
    """Have every run end (``logging.report: true``) by calling ``write`` (a callable, or "module:callable")."""
    REPORTERS[name] = write


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
