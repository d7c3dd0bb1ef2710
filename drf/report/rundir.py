"""Reading a run directory for its report: sample scores, logged reward curves and the resolved config.

The layout is ``drf.run_dir.RunDir``'s. Every piece is optional, so a report also works for a run that stopped early.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drf.errors import InputError
from drf.run_dir import RunDir, sample_videos

_CURVE = re.compile(r"^(?P<prefix>.+)/(?:total|aspect/(?P<aspect>[^/]+))$")
_NAMED = re.compile(r"^(?P<prefix>(?:.+/)?reward)/(?P<name>[^/]+)$")  # reward/<name>: one entry of rewards:


def read_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config as plain data ({} when the run has none)."""
    path = RunDir(run_dir).config
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise InputError(
            f"{path}: invalid YAML ({getattr(err, 'problem', err)}); the run's config is damaged"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config sections, got {type(data).__name__}")
    return data


@dataclass
class SampleScore:
    """What a trainer recorded for one sample video: its prompt, total reward, per-aspect and per-question rewards,
    and when a judge ran its alignment score, per judge aspect, next to the critic's mean p(expected) per judge aspect."""

    prompt: str | None = None
    total: float | None = None
    aspects: dict[str, float] = field(default_factory=dict)
    questions: dict[str, float] = field(default_factory=dict)
    judge_alignment: float | None = None
    judge_by_aspect: dict[str, float] = field(default_factory=dict)
    critic_p_by_aspect: dict[str, float] = field(default_factory=dict)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # "nan"/"inf" strings written for non-finite values
        except ValueError:
            return None
    return None


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    out = {str(k): _number(v) for k, v in value.items()}
    return {k: v for k, v in out.items() if v is not None}


def _sample_score(record: dict[str, Any]) -> SampleScore:
    """Accept the record shapes a trainer may write: nested (``aspects``/``questions``) or flat metric names."""
    total = next((_number(record[k]) for k in ("total", "reward", "reward/total") if k in record), None)
    aspects = _numbers(record.get("aspects") or record.get("per_aspect"))
    questions = _numbers(record.get("questions") or record.get("per_question") or record.get("rewards"))
    for key, value in record.items():
        match = _CURVE.match(str(key))
        if match and match.group("aspect") and _number(value) is not None:
            aspects.setdefault(match.group("aspect"), _number(value))
        if "/q/" in str(key) and _number(value) is not None:
            questions.setdefault(str(key).split("/q/", 1)[1], _number(value))
    prompt = record.get("prompt")
    judge = record.get("oracle") if isinstance(record.get("oracle"), dict) else {}
    return SampleScore(prompt=prompt if isinstance(prompt, str) else None, total=total, aspects=aspects,
                       questions=questions, judge_alignment=_number(judge.get("alignment")),
                       judge_by_aspect=_numbers(judge.get("alignment_by_aspect")),
                       critic_p_by_aspect=_numbers(judge.get("critic_p_by_aspect")))  # fmt: skip


def _video_key(record: dict[str, Any]) -> str | None:
    for key in ("file", "video", "path", "name"):
        if isinstance(record.get(key), str):
            return Path(record[key]).name
    return None


def read_scores(step_dir: Path) -> dict[str, SampleScore]:
    """``{video file name: SampleScore}`` from ``scores.json``; videos are matched by file name, or by order."""
    path = step_dir / RunDir.SCORES
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: invalid JSON ({err.msg}); the sample scores are damaged") from None
    videos = [p.name for p in sample_videos(step_dir)]
    if isinstance(data, dict):
        listed = next((data[k] for k in ("videos", "samples", "scores") if isinstance(data.get(k), list)), None)
        if listed is None:
            return {Path(k).name: _sample_score(v) for k, v in data.items() if isinstance(v, dict)}
        data = listed
    if not isinstance(data, list):
        return {}
    scores = {}
    for index, record in enumerate(r for r in data if isinstance(r, dict)):
        key = _video_key(record) or (videos[index] if index < len(videos) else None)
        if key is not None:
            scores[key] = _sample_score(record)
    return scores


def reward_curves(records: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Logged ``<prefix>/total`` and ``<prefix>/aspect/<a>`` metrics as ``{prefix: {name: [(step, value)]}}``.

    ``total`` comes first in each group; non-finite values are kept so charts can show them as gaps.
    """
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for record in records:
        step = _number(record.get("step"))
        if step is None:
            continue
        for key, value in record.items():
            match = _CURVE.match(str(key))
            number = _number(value)
            if not match or number is None:
                continue
            name = match.group("aspect") or "total"
            group = groups.setdefault(match.group("prefix"), {"total": []})
            group.setdefault(name, []).append((step, number))
    return {prefix: {k: v for k, v in series.items() if v} for prefix, series in groups.items()
            if any(v for v in series.values())}  # fmt: skip


def named_reward_curves(records: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Logged ``<prefix>/<name>`` metrics, one per entry of the run's ``rewards:`` list (critic, geometry.*, a
    user's own), as ``{prefix: {name: [(step, value)]}}``; only prefixes with two or more rewards (with one, its
    curve is the total's)."""
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for record in records:
        step = _number(record.get("step"))
        for key, value in record.items():
            match = _NAMED.match(str(key))
            number = _number(value)
            if step is None or not match or number is None or match.group("name") == "total":
                continue
            groups.setdefault(match.group("prefix"), {}).setdefault(match.group("name"), []).append((step, number))
    return {prefix: series for prefix, series in groups.items() if len(series) > 1}


def judge_curves(run_dir: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``{judge aspect: {"critic p(expected)": [(step, mean)], "judge score": [(step, mean)]}}`` over the run's
    evaluations (empty without a judge)."""
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for step, step_dir in RunDir(run_dir).sample_steps().items():
        scores = list(read_scores(step_dir).values())
        for aspect in sorted({a for s in scores for a in s.judge_by_aspect}):
            for name, attr in (("critic p(expected)", "critic_p_by_aspect"), ("judge score", "judge_by_aspect")):
                values = [getattr(s, attr)[aspect] for s in scores if aspect in getattr(s, attr)]
                if values:
                    curves.setdefault(aspect, {}).setdefault(name, []).append((step, sum(values) / len(values)))
    return curves
