"""README's five-minute tour runs as written, in a fresh folder, and prints what README shows.

Every ``drf ...`` line of the tour's bash blocks is run in order (in this process, at 100 columns); a ``text``
block right after a bash block holds the first lines of what its last command prints (stdout, or stderr when it
fails), and, after a line ``…``, the last ones. ``DRF_WRITE_TOUR=1 pytest tests/test_tour.py`` rewrites those blocks
from the run, keeping their lengths: the way to refresh README after the toy world's models change.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from drf.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = "…"
TOUR = re.compile(r"(?ms)^## A five-minute tour\n(.*?)(?=^## )")
BLOCK = re.compile(r"(?ms)^```(bash|text)\n(.*?)^```\n")


def tour_blocks(readme: str) -> tuple[int, list[re.Match]]:
    """The tour's offset in README and its fenced bash and text blocks."""
    tour = TOUR.search(readme)
    assert tour, "README has no '## A five-minute tour' section"
    return tour.start(1), list(BLOCK.finditer(tour.group(1)))


def commands(block: str) -> list[list[str]]:
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("drf ")]


def relative(text: str, folder: Path) -> str:
    """Paths inside the folder the tour ran in, as a reader running it from a checkout sees them: relative."""
    for prefix in {str(folder), str(folder.resolve())}:
        text = text.replace(prefix + os.sep, "")
    return text


def normalized(text: str) -> str:
    """What may differ between two runs of the tour: wall times, the CPU threads and the sign of a change that rounds
    to zero."""
    text = re.sub(r"\b\d+(\.\d+)? s\b", "<t> s", text)
    text = re.sub(r"[-+](0\.0+)\b", r"±\1", text)
    return re.sub(r"\b\d+ CPU threads\b", "<n> CPU threads", text)


def shown(block: str) -> tuple[list[str], list[str]]:
    """(first lines, last lines) a text block shows."""
    lines = block.splitlines()
    if SKIP in lines:
        at = lines.index(SKIP)
        return lines[:at], lines[at + 1 :]
    return lines, []


@pytest.fixture
def tour_folder(tmp_path, monkeypatch):
    """A fresh folder with what the tour's commands read: configs, prompt templates and the shipped toy models."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "prompts" / "templates", tmp_path / "prompts" / "templates")
    (tmp_path / "drf").mkdir()
    (tmp_path / "drf" / "assets").symlink_to(ROOT / "drf" / "assets")  # configs/toyworld_*.yaml read ../drf/assets
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")
    return tmp_path


def test_readme_tour_runs_and_prints_what_readme_shows(tour_folder, capsys):
    readme = README.read_text(encoding="utf-8")
    offset, blocks = tour_blocks(readme)
    fresh_blocks, printed = [], []
    for block, following in zip(blocks, [*blocks[1:], None]):
        if block.group(1) != "bash" or not commands(block.group(2)):
            continue
        shows_output = following is not None and following.group(1) == "text"
        argvs = commands(block.group(2))
        for argv in argvs:
            code = main(argv)
            out, err = capsys.readouterr()
            printed.append(out + err)
            if argv is not argvs[-1] or not shows_output:  # the shown one may be a failure README explains
                assert code == 0, f"drf {shlex.join(argv)} exited {code}: {err}"
        if not shows_output:
            continue
        lines = relative(out if code == 0 else err, tour_folder).rstrip("\n").splitlines()
        head, tail = shown(following.group(2))
        fresh = lines[: len(head)] + ([SKIP, *lines[-len(tail) :]] if tail else [])
        fresh_blocks.append((offset + following.start(2), offset + following.end(2), "\n".join(fresh) + "\n"))
        if not os.environ.get("DRF_WRITE_TOUR"):
            want = normalized(following.group(2))
            assert normalized(fresh_blocks[-1][2]) == want, (
                f"README shows other output for: drf {shlex.join(argv)} (if the change is meant, e.g. new toy "
                "models, rerun this test with DRF_WRITE_TOUR=1 and read the diff)"
            )
    assert not any("\ufffd" in text for text in printed), "a tour command printed U+FFFD"
    if os.environ.get("DRF_WRITE_TOUR"):
        for start, end, text in reversed(fresh_blocks):
            readme = readme[:start] + text + readme[end:]
        README.write_text(readme, encoding="utf-8")
