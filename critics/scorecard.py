"""Score existing videos and lay the answers out for people: what ``drf score`` prints.

Kept out of the CLI module so the same table and JSON can be produced from Python.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from critics.config import CriticConfig
from critics.registry import load_critic
from drf.errors import InputError
from drf.frames import FramesConfig, frames_from_config
from drf.table import format_table as format_columns
from drf.table import wrap_text
from drf.text import readable
from drf.video_io import FRAME_SUFFIXES, VIDEO_SUFFIXES, read_video
from prompts.config import QuestionsConfig
from prompts.registry import decompose

UNTRAINED = "(not shown: an untrained critic's generated text is random tokens)"


def video_paths(path: str | Path) -> list[Path]:
    """A video file, a folder of frames (one video), or a folder of videos (each one) -> the videos to score."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; give a video, a folder of frames or a folder of videos")
    if path.is_file():
        return [path]
    videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if videos:
        return videos
    if any(p.suffix.lower() in FRAME_SUFFIXES for p in path.iterdir()):
        return [path]
    raise InputError(f"{path}: folder holds neither videos ({', '.join(VIDEO_SUFFIXES)}) nor PNG/JPG frames")


def subsample(frames: torch.Tensor, max_frames: int) -> torch.Tensor:
    """frames [T,3,H,W] -> at most ``max_frames`` evenly spaced frames (first and last kept)."""
    if frames.shape[0] <= max_frames:
        return frames
    index = torch.linspace(0, frames.shape[0] - 1, max_frames).round().long()
    return frames[index]


def load_videos(
    path: str | Path, max_frames: int, frames: dict[str, Any] | None = None
) -> list[tuple[Path, torch.Tensor]]:
    """Each video's frames [T,3,H,W]: those ``frames`` (``FramesConfig`` fields: the selection a critic was trained
    on) picks, then at most ``max_frames`` of them, evenly spaced."""
    picked = []
    for p in video_paths(path):
        video = read_video(p)
        if frames:
            index = frames_from_config(FramesConfig(**frames), video.shape[0])
            video = video if index is None else video[index]
        picked.append((p, subsample(video, max_frames)))
    return picked


def _question_set(prompt: str, questions_file: str):
    config = QuestionsConfig(decomposer="file", file=questions_file) if questions_file else QuestionsConfig()
    return decompose(prompt, config)


def _number(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def explanation_shown(text: str, untrained: bool) -> str:
    """What a person is shown of a generated explanation: the text when it is valid text from a trained critic,
    else what it is, in words (see :func:`drf.text.readable`)."""
    return UNTRAINED if untrained else readable(text)


def score_videos(
    videos: list[tuple[Path, torch.Tensor]], prompt: str, questions_file: str, config: CriticConfig, explain: bool
) -> list[dict[str, Any]]:
    """Score each video (frames [T,3,H,W]) against the prompt's questions with the critic ``config`` -> one record
    per video; an explanation is the critic's text when it is valid text from a trained critic, else why not."""
    qset = _question_set(prompt, questions_file)
    if not len(qset):
        raise InputError(f"prompt {prompt!r} yields no questions; check --prompt or --questions")
    critic = load_critic(config)
    results = []
    for path, frames in videos:
        with torch.no_grad():
            out = critic.score(frames[None], [qset])
        generate = explain and not config.tiny  # an untrained critic's text is not worth the generation time
        texts = critic.explain(frames[None], [qset])[0] if generate else [""] * len(qset)
        rows = []
        for q_index, (q, text) in enumerate(zip(qset, texts)):
            row = {
                "id": q.id,
                "aspect": q.aspect,
                "kind": q.kind,
                "question": q.text,
                "expected": q.expected,
                "p_expected": _number(float(out.p_expected[0, q_index])),
                "reward": _number(float(out.rewards[0, q_index])),
                "weight": q.weight,
                "p_yes": _number(float(out.p_yes[0, q_index])),
                "p_no": _number(float(out.p_no[0, q_index])),
            }
            if explain:
                row["explanation"] = explanation_shown(text, config.tiny)
            rows.append(row)
        results.append({"video": str(path), "prompt": prompt, "frames": int(frames.shape[0]), "questions": rows})
    return results


def format_table(result: dict[str, Any], explain: bool, width: int | None = None) -> str:
    """One video's answers as aligned columns that fit ``width`` (the terminal's by default), long cells wrapped;
    the id starts with the aspect, so only JSON carries it."""
    headers = ["id", "question", "expected", "p(expected)", "reward", "weight"]
    if explain:
        headers.append("explanation")
    table = []
    for row in result["questions"]:
        cells = [row["id"], row["question"], row["expected"]]
        cells += [f"{row['p_expected']:.3f}", f"{row['reward']:.3f}", f"{row['weight']:g}"]
        table.append([*cells, row["explanation"]] if explain else cells)
    head = wrap_text(f"{result['video']} ({result['frames']} frames), prompt: {result['prompt']}", width, "  ")
    return "\n".join([*head, *format_columns(headers, table, numeric=(3, 4, 5), width=width)])
