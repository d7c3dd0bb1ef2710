"""A real browser opens the report offline and draws something: headless Chromium takes a non-blank screenshot."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from drf.report.builder import Report, build_report, inspect_video, save_html
from prompts.schema import Question, QuestionSet
from tests.report.conftest import RegionCritic

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH (Debian: apt-get install chromium chromium-driver)"
)


def test_headless_chromium_renders_a_non_blank_report(tmp_path):
    import torch
    from PIL import Image

    qset = QuestionSet(
        prompt="a red square in the top left corner",
        questions=[Question(id="q.red", aspect="alignment", kind="binary", text="Is it red?", expected="yes")],
    )
    frames = torch.zeros(4, 3, 32, 32)
    frames[:, 0, 2:14, 2:14] = 1.0
    view = inspect_video(RegionCritic({"q.red": (0, slice(0, 16), slice(0, 16))}), frames, qset, title="planted")
    page = save_html(build_report(Report(title="browser check", source="memory", videos=[view])), tmp_path / "r.html")
    shot = tmp_path / "shot.png"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
        page.resolve().as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot (exit {result.returncode}): {result.stderr.strip()[-500:]}"
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        # A blank page is one colour; text, the table and the inlined frames give hundreds.
        assert len(colours) > 50
        # The planted red square and the red heat map are drawn: strongly red pixels exist.
        red = sum(count for count, (r, g, b) in colours if r > 200 and g < 60 and b < 60)
        assert red > 100
