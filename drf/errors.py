"""Error types raised at drf's boundaries.

Every error a person can cause (a bad config key, an unreadable file, a malformed question) is raised as a
``DRFError`` whose message is one line naming what was wrong, where, and what to do. The CLI prints that line
and exits with status 2 instead of showing a traceback. Internal bugs are not wrapped and raise normally.
"""

from __future__ import annotations


class DRFError(Exception):
    """Base class for errors caused by user input; ``str(err)`` is a complete one-line message."""


class ConfigError(DRFError):
    """A config file, key, value or override is invalid."""


class ModelLoadError(DRFError):
    """A model, tokenizer or scheduler could not be loaded from the given path or id."""


class InputError(DRFError):
    """A user-supplied input (video, frame count, prompt, file) cannot be used as given."""


class QuestionError(DRFError):
    """A question or question set is malformed (names the question id and field)."""


class TemplateError(DRFError):
    """A question template fails to parse or render (names file:line)."""


class CriticError(DRFError):
    """A critic cannot answer as asked (unknown family, unsupported question kind, ...)."""


class FieldError(ConfigError):
    """A section's value is invalid; ``key`` is relative to the section that raised it."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key} {detail}")
        self.key = key
        self.detail = detail


def invalid(key: str, detail: str) -> FieldError:
    """Build the error a section's ``validate`` raises: ``raise invalid("num_frames", "must be 4n+1 (got 8); try 9")``.

    ``key`` is relative to the section (``"grad_window.k"`` from ``SamplingConfig``); the loader prefixes the full
    dotted path and the file:line where that key was set.
    """
    return FieldError(key, detail)
