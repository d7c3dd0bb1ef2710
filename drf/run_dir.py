"""A run directory's layout: the one place that names the files a run writes and its readers look for.

``runs/<name>/`` holds ``config.yaml`` (the resolved config), ``questions.jsonl`` (the exact questions asked),
``metrics.jsonl``, ``checkpoints/step-N/``, ``samples/step-N/`` (videos and ``scores.json``), ``lora/`` or
``transformer/`` (exported weights) and ``report.html``. Trainers, the report, ``drf inspect`` and the benches all
reach these paths through :class:`RunDir`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = (".gif", ".mp4")
_STEP = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory; nothing is created or read until a caller does so."""

    root: Path

    CONFIG = "config.yaml"
    QUESTIONS = "questions.jsonl"
    METRICS = "metrics.jsonl"
    CHECKPOINTS = "checkpoints"
    SAMPLES = "samples"
    SCORES = "scores.json"
    REPORT = "report.html"
    LORA = "lora"
    TRANSFORMER = "transformer"

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def questions(self) -> Path:
        return self.root / self.QUESTIONS

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    @property
    def lora(self) -> Path:
        return self.root / self.LORA

    @property
    def transformer(self) -> Path:
        return self.root / self.TRANSFORMER

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step}"

    def samples(self, step: int) -> Path:
        return self.root / self.SAMPLES / f"step-{step}"

    def scores(self, step: int) -> Path:
        return self.samples(step) / self.SCORES

    def is_run(self) -> bool:
        """Whether the folder holds any of the files a trainer writes."""
        return self.root.is_dir() and any(
            (self.root / name).exists() for name in (self.CONFIG, self.METRICS, self.SAMPLES)
        )

    def has_training(self) -> bool:
        """Whether a run already trained here (checkpoints or logged metrics), so a fresh start would overwrite it."""
        return self.checkpoints.is_dir() or self.metrics.is_file()

    def sample_steps(self) -> dict[int, Path]:
        """``{step: samples/step-N}`` for every sample folder that holds at least one video, in step order."""
        root = self.root / self.SAMPLES
        if not root.is_dir():
            return {}
        steps = {}
        for child in root.iterdir():
            match = _STEP.match(child.name)
            if match and child.is_dir() and sample_videos(child):
                steps[int(match.group(1))] = child
        return dict(sorted(steps.items()))


def sample_videos(step_dir: Path) -> list[Path]:
    """The videos of one ``samples/step-N`` folder, by name."""
    return sorted(p for p in step_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
