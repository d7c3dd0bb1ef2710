"""Evaluation: sample held-out prompts without gradient, save the videos, score them with the critic and a judge."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from drf.frames import frames_from_config
from drf.grad_window import GradWindow
from drf.rewards import RewardOutput
from drf.run_dir import RunDir
from drf.sampling import sample
from drf.stats import metric_means
from drf.video_io import video_filename, write_video
from trainers.data import stream_noise, stream_seed


def judge_metrics(verdict: dict[str, Any], question_set: Any) -> dict[str, float]:
    """``oracle/total`` and ``oracle/aspect/<aspect>``: the mean 0/1 score of the questions the judge measured; with
    an alignment verdict also ``oracle/alignment/total`` and ``oracle/alignment/aspect/<aspect>`` (object, colour,
    count, ... — the judge's own alignment aspects, where an object it cannot find counts as wrong)."""
    scores = verdict["scores"]
    metrics: dict[str, float] = {}
    if scores:
        by_aspect: dict[str, list[int]] = {}
        for q in question_set.questions:
            if q.id in scores:
                by_aspect.setdefault(q.aspect, []).append(scores[q.id])
        metrics["oracle/total"] = sum(scores.values()) / len(scores)
        metrics.update({f"oracle/aspect/{a}": sum(v) / len(v) for a, v in by_aspect.items()})
    alignment = verdict.get("alignment") or {}
    if alignment.get("mean") is not None:
        metrics["oracle/alignment/total"] = alignment["mean"]
        metrics.update({f"oracle/alignment/aspect/{a}": v for a, v in alignment["by_aspect"].items()})
    return metrics


def p_expected_by_id(critic: RewardOutput | None) -> dict[str, float]:
    """The critic's probability of each expected answer of the first video, by question id ({} without a critic)."""
    if critic is None:
        return {}
    p = critic.extras["p_expected"][0]
    return {qid: float(p[q]) for q, qid in enumerate(critic.question_ids[0])}


def by_judge_aspect(values: dict[str, float], aspect_of: dict[str, str]) -> dict[str, float]:
    """The mean of a per-question value (the critic's reward or p(expected)) over the questions of each of the judge's
    aspects, so that critic and judge can be compared aspect by aspect (``aspect_of``: {question id: judge aspect})."""
    grouped: dict[str, list[float]] = {}
    for qid, aspect in aspect_of.items():
        if qid in values and math.isfinite(values[qid]):
            grouped.setdefault(aspect, []).append(values[qid])
    return {aspect: sum(v) / len(v) for aspect, v in sorted(grouped.items())}


def eval_videos(
    generator: Any, prompts: Sequence[str], indices: Sequence[int], sampling: Any, seed: int, batch_size: int,
    autocast: Any,
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(prompt, final latents [1,...], frames [1,T,3,H,W] in [0,1]) per prompt, sampled and decoded ``batch_size`` at a
    time; video ``indices[i]`` always starts from the noise of its own stream, whatever the batch or process."""
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        noise = stream_noise(generator, [stream_seed(seed, i) for i in indices[start : start + batch_size]])
        cond = generator.encode_prompts(chunk, sampling.guidance_scale)
        with autocast() if autocast is not None else nullcontext():
            latents = sample(generator, cond, GradWindow.none(sampling.num_steps), latents=noise).latents
        frames = generator.decode(latents)
        for i, prompt in enumerate(chunk):
            yield prompt, latents[i : i + 1], frames[i : i + 1]


@torch.no_grad()
def sample_and_score(
    generator: Any,
    rewards: Any,
    prompts: Sequence[str],
    question_sets: Sequence[Any],
    *,
    sampling: Any,
    seed: int,
    out_dir: str | Path,
    video_format: str,
    fps: int,
    autocast: Any = None,
    judge: Any = None,
    batch_size: int = 1,
    indices: Sequence[int] | None = None,
    keep: int | None = None,
) -> list[dict[str, Any]]:
    """Sample one video per prompt (fixed noise per video index, so evaluations compare; ``batch_size`` of them at a
    time), write it and return its scores.json record.

    ``rewards``: the run's ``trainers.rewards.RewardSet``. ``indices``: the videos' indices in the whole evaluation
    (default 0, 1, ...), which pick their noise and name their files; a process evaluating a slice passes its own.
    Only the first ``keep`` videos (default all) are written and recorded: the rest pad a slice so that every process
    runs the generator equally often. Writes ``out_dir/<index>_<prompt words>.<format>``. A record holds the weighted
    total, each named reward and, with a critic, its per-aspect and per-question rewards and answer probability per
    question, plus the video's metrics under ``metrics`` (``write_scores`` averages them). With a ``judge`` (see
    ``trainers.plugins``) each video is also judged: its per-question 0/1 scores go into the record.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    indices = list(range(len(prompts))) if indices is None else list(indices)
    keep = len(prompts) if keep is None else keep
    records = []
    videos = eval_videos(generator, prompts, indices, sampling, seed, batch_size, autocast)
    for position, (index, qset, (prompt, latents, frames)) in enumerate(zip(indices, question_sets, videos)):
        if position >= keep:
            continue
        picked = frames_from_config(sampling.frames, frames.shape[1], index)
        scored = frames if picked is None else frames[:, picked]
        result = rewards.score([prompt], [qset], latents=latents, frames=scored.float(), seeds=[stream_seed(seed, index)])
        metrics = result.metrics
        path = write_video(out_dir / video_filename(index, prompt, video_format), frames[0].float().cpu(), fps=fps)
        records.append(
            {
                "video": path.name,
                "prompt": prompt,
                "reward": metrics["reward/total"],
                "by_reward": {name: float(value[0]) for name, value in result.values.items()},
                "aspects": {k.split("/")[-1]: v for k, v in metrics.items() if k.startswith("reward/aspect/")},
                "questions": {k.split("/")[-1]: v for k, v in metrics.items() if k.startswith("reward/q/")},
                "p_expected": p_expected_by_id(result.critic),
                "metrics": metrics,
            }
        )
        if judge is not None:
            verdict = judge(frames[0].float().cpu(), qset.questions)
            judged = judge_metrics(verdict, qset)
            alignment = verdict.get("alignment") or {}
            aspect_of = alignment.get("aspect_of", {})
            p = records[-1]["p_expected"]
            p_judged = [p[q] for q in aspect_of if q in p and math.isfinite(p[q])]
            records[-1]["oracle"] = {
                "total": judged.get("oracle/total"),
                "alignment": alignment.get("mean"),
                "alignment_by_aspect": alignment.get("by_aspect", {}),
                "critic_by_aspect": by_judge_aspect(records[-1]["questions"], aspect_of),
                "critic_p": sum(p_judged) / len(p_judged) if p_judged else None,
                "critic_p_by_aspect": by_judge_aspect(p, aspect_of),
                "scores": verdict["scores"],
            }
            metrics.update(judged)
    return records


def write_scores(out_dir: str | Path, records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Write ``out_dir/scores.json`` (the records of ``sample_and_score``, in video order, without their metrics) and
    return the mean ``eval/...`` metrics over the videos (each metric over the videos where it is finite)."""
    saved = [{k: v for k, v in record.items() if k != "metrics"} for record in records]
    text = json.dumps(saved, indent=2, allow_nan=True) + "\n"
    (Path(out_dir) / RunDir.SCORES).write_text(text, encoding="utf-8")
    return {f"eval/{key}": value for key, value in metric_means([record["metrics"] for record in records]).items()}
