"""A strict-enough HTML check on the standard library: tags balance, and everything a test needs is collected."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# Inside inline SVG, shapes are written self-closing (<line .../>); html.parser reports those via startendtag.


@dataclass
class Parsed:
    tags: list[str] = field(default_factory=list)
    attrs: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, name, value)
    text: str = ""
    doctype: str = ""


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, tuple[int, int]]] = []
        self.parsed = Parsed()
        self.chunks: list[str] = []
        self.errors: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.parsed.doctype = decl

    def _record(self, tag: str, attrs) -> None:
        self.parsed.tags.append(tag)
        self.parsed.attrs += [(tag, name, value or "") for name, value in attrs]

    def handle_starttag(self, tag, attrs) -> None:
        self._record(tag, attrs)
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs) -> None:
        self._record(tag, attrs)

    def handle_endtag(self, tag) -> None:
        if tag in VOID:
            self.errors.append(f"end tag for void element </{tag}> at {self.getpos()}")
            return
        if not self.stack or self.stack[-1][0] != tag:
            open_tag = self.stack[-1] if self.stack else None
            self.errors.append(f"</{tag}> at {self.getpos()} closes {open_tag}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def parse_html(document: str) -> Parsed:
    """Parse ``document``; raise AssertionError naming the first unbalanced tag."""
    checker = _Checker()
    checker.feed(document)
    checker.close()
    if checker.stack:
        checker.errors.append(f"unclosed tags: {checker.stack}")
    assert not checker.errors, checker.errors[0]
    checker.parsed.text = "".join(checker.chunks)
    return checker.parsed
