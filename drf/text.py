"""Generated text made safe to print or embed: a model's free text can carry control bytes that break terminals."""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Control characters and unassigned or private code points become U+FFFD; surrounding space is stripped."""
    text = _CONTROL.sub("\ufffd", text)
    return "".join(c if unicodedata.category(c) not in ("Cn", "Cs", "Co") else "\ufffd" for c in text).strip()
