"""Inspection reports: what a critic thought of a video question by question, and where its gradient points.

A report is a plain data model (``Report`` of ``VideoView``s, charts and base-vs-current comparisons) rendered by one
jinja2 template into a single self-contained HTML file. ``inspect_video`` fills a ``VideoView`` from any object with
the critic interface (``score``/``explain``); a run directory's report rebuilds the run's critic and questions from
its config.yaml.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from critics import registry as critic_registry
from critics.config import CriticConfig, default_critic_config
from critics.reward import CRITIC
from critics.scorecard import explanation_shown
from drf.config import load_section
from drf.errors import InputError
from drf.frames import FramesConfig, frames_from_config
from drf.logging import read_metrics
from drf.report import images
from drf.report.rundir import (
    SampleScore,
    judge_curves,
    named_reward_curves,
    read_config,
    read_scores,
    reward_curves,
)
from drf.report.saliency import saliency_maps
from drf.report.svg import line_chart
from drf.rewards import RewardOutput, aggregate
from drf.run_dir import RunDir, sample_videos
from drf.table import format_table, wrap_text
from drf.video_io import read_video
from prompts.cache import QuestionCache
from prompts.config import QuestionsConfig
from prompts.files import load_question_file, normalize_prompt
from prompts.registry import decompose
from trainers.paired import total_label

TEMPLATE = "report.html.j2"


# --------------------------------------------------------------------------------------------------------------------
# Data model


@dataclass
class QuestionView:
    """One row of the question table; ``saliency`` is a PNG data URI of the heat-map overlays ("" when not computed)."""

    id: str
    aspect: str
    kind: str
    text: str
    expected: str
    weight: float
    p_expected: float | None = None
    reward: float | None = None
    explanation: str = ""
    saliency: str = ""


@dataclass
class VideoView:
    """One inspected video: its prompt, the animation, the frames the heat maps are drawn on, and the question rows."""

    title: str
    prompt: str
    animation: str
    frames: str
    frame_indices: list[int]
    frame_width: int
    total: float | None
    aspects: dict[str, float]
    questions: list[QuestionView]


@dataclass
class Comparison:
    """The same sample slot at the base step and at the current step."""

    name: str
    prompt: str
    base_step: int
    current_step: int
    base: str
    current: str
    base_total: float | None = None
    current_total: float | None = None
    base_judge: float | None = None
    current_judge: float | None = None
    width: int = 0


@dataclass
class Chart:
    title: str
    svg: str


@dataclass
class Report:
    title: str
    source: str
    notes: list[str] = field(default_factory=list)
    videos: list[VideoView] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    reward_label: str = "total"  # what a run's total reward is called: its rewards' names (drf.reward_config)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


@dataclass
class SaliencyOptions:
    """How heat maps are made: SmoothGrad samples and noise, box-blur size, and how many frames each question shows."""

    samples: int = 1
    noise_std: float = 0.05
    kernel: int = 3
    frames: int = 4
    enabled: bool = True


# --------------------------------------------------------------------------------------------------------------------
# Inspecting one video


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def inspect_video(
    critic: Any,
    frames: torch.Tensor,
    question_set: Any,
    *,
    title: str,
    aspect_weights: Mapping[str, float] | None = None,
    saliency: SaliencyOptions | None = None,
    explain: bool = True,
    fps: float = 8.0,
    frame_numbers: Sequence[int] | None = None,
) -> VideoView:
    """Score ``frames`` [T,3,H,W] in [0,1] against one question set; heat maps and explanations per question.

    ``critic`` needs ``score(frames [B,T,3,H,W], question_sets) -> CriticOutput`` and ``explain(...)``.
    ``frame_numbers`` names each of the T frames in the source video (when they were picked from a longer one).
    """
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise InputError(f"{title}: frames must be [T,3,H,W], got {tuple(frames.shape)}")
    options = saliency or SaliencyOptions()
    video = frames.float().clamp(0, 1)[None]
    sets = [question_set]
    with torch.no_grad():
        output = critic.score(video, sets)
    ids = list(output.question_ids[0])
    by_id = {q.id: q for q in question_set.questions}
    total, per_aspect = aggregate(RewardOutput.from_critic(output, sets), dict(aspect_weights or {}))

    indices = images.pick_frames(video.shape[1], options.frames)
    heat = None
    if options.enabled:
        generator = torch.Generator().manual_seed(0)
        heat = saliency_maps(
            lambda x: critic.score(x, sets).rewards,
            video,
            samples=options.samples,
            noise_std=options.noise_std,
            kernel=options.kernel,
            generator=generator,
        )[0]  # [Q,T,H,W]
    untrained = bool(getattr(getattr(critic, "config", None), "tiny", False))
    generate = explain and not untrained  # an untrained critic's text is not worth the generation time
    explanations = critic.explain(video, sets)[0] if generate else [""] * len(ids)

    rows = []
    for q, qid in enumerate(ids):
        question = by_id[qid]
        picture = ""
        if heat is not None:
            shown = images.overlay(video[0], heat[q].to(video.dtype))
            picture = images.png_data_uri(images.strip(shown, indices))
        rows.append(
            QuestionView(
                id=qid,
                aspect=question.aspect,
                kind=question.kind,
                text=question.text,
                expected=question.expected,
                weight=float(question.weight),
                p_expected=_finite(float(output.p_expected[0, q])),
                reward=_finite(float(output.rewards[0, q])),
                explanation=explanation_shown(explanations[q], untrained) if explain else "",
                saliency=picture,
            )
        )
    height = video.shape[-2]
    strip = images.strip(video[0], indices)
    return VideoView(
        title=title,
        prompt=question_set.prompt,
        animation=images.gif_data_uri(video[0], fps),
        frames=images.png_data_uri(strip),
        frame_indices=[frame_numbers[i] for i in indices] if frame_numbers is not None else indices,
        frame_width=strip.shape[-1] * images.display_scale(height),
        total=_finite(float(total[0])),
        aspects={a: v for a, t in sorted(per_aspect.items()) if (v := _finite(float(t[0]))) is not None},
        questions=rows,
    )


# --------------------------------------------------------------------------------------------------------------------
# Rendering


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, digits=3: "—" if v is None else f"{v:.{digits}f}"
    env.filters["sortkey"] = lambda v: "" if v is None else repr(float(v))
    return env


def build_report(report: Report) -> str:
    """The report as one HTML document: no external assets, pictures inlined as data URIs."""
    return _environment().get_template(TEMPLATE).render(report=report, scale=images.display_scale)


def save_html(html: str, path: str | os.PathLike) -> Path:
    """Write atomically, so a reader (or a browser refresh) never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report.", suffix=".html.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def summarize(report: Report, worst: int = 5, width: int | None = None) -> str:
    """A terminal summary that fits ``width`` (the terminal's by default): totals, aspects and a table of the
    lowest-reward questions of each video, then each video's total at the first and last evaluated step."""
    lines = wrap_text(f"{report.title} ({report.source})", width, "  ")
    for note in report.notes:
        lines += wrap_text(f"note: {note}", width, "  ")
    for video in report.videos:
        lines += ["", *wrap_text(f"{video.title}: {video.prompt!r}", width, "  ")]
        scores = [f"total {_shown(video.total)}", *(f"{a} {v:.3f}" for a, v in video.aspects.items())]
        lines += wrap_text("  ".join(scores), width, "  ")
        scored = sorted((q for q in video.questions if q.reward is not None), key=lambda q: q.reward)
        rows = [(q.id, q.expected, _shown(q.p_expected), f"{q.reward:.3f}") for q in scored[:worst]]
        if rows:
            headers = ("lowest-reward question", "expected", "p(expected)", "reward")
            lines += format_table(headers, rows, numeric=(2, 3), width=width)
    if report.comparisons:
        rows = [
            (c.name, str(c.base_step), _shown(c.base_total), str(c.current_step), _shown(c.current_total))
            for c in report.comparisons
        ]
        lines += [
            "",
            *format_table(("sample", "step", "total", "step", "total"), rows, numeric=(1, 2, 3, 4), width=width),
        ]
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------------------------------------------------
# Composing: the critic and question sets of a video or a run (lazy imports of critics and prompts)


TINY_NOTE = (
    "the critic is a tiny untrained model (random weights): rewards, explanations and heat maps are not meaningful"
)


def load_critic_for(config: CriticConfig) -> tuple[Any, list[str]]:
    """Load a critic and the notes a reader should see about it."""
    notes = [TINY_NOTE] if getattr(config, "tiny", False) else []
    return critic_registry.load_critic(config), notes


def run_question_sets(run_dir: Path) -> dict[str, Any]:
    """Question sets recorded in ``questions.jsonl``, keyed by normalised prompt (the last record of a prompt wins)."""
    return {normalize_prompt(qset.prompt): qset for qset in QuestionCache(RunDir(run_dir).questions)}


def question_set_for(prompt: str, *, questions_file: str | None = None, config: Any = None) -> Any:
    """Questions for one prompt: from a question file when given (the file's only set when no prompt matches is
    ambiguous), else the configured decomposer (the rule decomposer by default)."""
    if questions_file:
        sets = load_question_file(questions_file)
        if not prompt and len(sets) == 1:
            return next(iter(sets.values()))
        if not prompt:
            raise InputError(f"{questions_file} holds {len(sets)} question sets; pick one with --prompt")
        return decompose(prompt, QuestionsConfig(decomposer="file", file=str(questions_file)))
    if not prompt:
        raise InputError('no prompt given; pass --prompt "..." (or --questions FILE with one question set)')
    return decompose(prompt, config or QuestionsConfig())


# --------------------------------------------------------------------------------------------------------------------
# Reports for a video and for a run directory


def report_for_video(
    path: str | os.PathLike,
    *,
    critic: Any,
    question_set: Any,
    notes: Sequence[str] = (),
    aspect_weights: Mapping[str, float] | None = None,
    saliency: SaliencyOptions | None = None,
    explain: bool = True,
    max_frames: int | None = 16,
    frame_policy: Mapping[str, Any] | None = None,
) -> Report:
    """Report for one video file (mp4/gif/folder of frames); the critic sees the frames ``frame_policy``
    (``FramesConfig`` fields: the selection a critic was trained on) picks, at most ``max_frames`` of them evenly
    spaced (as ``drf score`` does), since a long video would not fit a critic's context."""
    path = Path(path)
    frames = read_video(path)
    picked = frames_from_config(FramesConfig(**frame_policy), frames.shape[0]) if frame_policy else None
    kept = list(range(frames.shape[0])) if picked is None else picked
    kept = [kept[i] for i in images.pick_frames(len(kept), max_frames)] if max_frames else kept
    view = inspect_video(critic, frames[kept], question_set, title=path.name, aspect_weights=aspect_weights,
                         saliency=saliency, explain=explain, frame_numbers=kept)  # fmt: skip
    return Report(title=f"drf inspect: {path.name}", source=str(path), notes=list(notes), videos=[view])


def run_reward_label(config: dict[str, Any]) -> str:
    """The total reward's name from a run's resolved config (``rewards:`` names; a config without the list scored
    with the critic alone)."""
    rewards = config.get("rewards") if isinstance(config.get("rewards"), list) else []
    names = [r["name"] for r in rewards if isinstance(r, dict) and isinstance(r.get("name"), str)]
    return total_label(names or [CRITIC])


def _curve_charts(run_dir: Path, label: str) -> list[Chart]:
    path = RunDir(run_dir).metrics
    if not path.is_file():
        return []
    charts = []
    records = read_metrics(path)
    for prefix, series in reward_curves(records).items():
        if prefix.split("/")[-1] == "reward":  # the run's rewards (not the judge's alignment curves)
            title = f"{prefix}: {label}" + (" and per critic aspect" if len(series) > 1 else "")
        else:
            title = f"{prefix}: total and per aspect"
        charts.append(Chart(title=title, svg=line_chart(series, title=title)))
    for prefix, series in named_reward_curves(records).items():
        title = f"{prefix}: each reward"
        charts.append(Chart(title=title, svg=line_chart(series, title=title)))
    return charts


def _judge_charts(run_dir: Path) -> list[Chart]:
    """Per judge aspect, the critic's mean p(expected) against the judge's score at every evaluation: the two should
    rise together; a critic line that climbs away from the judge is reward hacking."""
    return [Chart(title=f"critic vs judge: {aspect}", svg=line_chart(lines, title=f"critic vs judge: {aspect}"))
            for aspect, lines in judge_curves(run_dir).items()]  # fmt: skip


def _prompt_of(video: Path, score: SampleScore | None, prompts: Sequence[str], index: int) -> str | None:
    if score is not None and score.prompt:
        return score.prompt
    match = re.match(r"^(\d+)_", video.name)
    position = int(match.group(1)) if match else index
    return prompts[position] if 0 <= position < len(prompts) else None


def _comparisons(base_step: int, base_dir: Path, step: int, step_dir: Path, prompts: Sequence[str]) -> list[Comparison]:
    base_scores, scores = read_scores(base_dir), read_scores(step_dir)
    base_videos = {p.name: p for p in sample_videos(base_dir)}
    out = []
    for index, video in enumerate(sample_videos(step_dir)):
        base = base_videos.get(video.name)
        if base is None:
            continue
        current_frames, base_frames = read_video(video), read_video(base)
        score = scores.get(video.name)
        base_score = base_scores.get(base.name)
        out.append(
            Comparison(
                name=video.stem,
                prompt=_prompt_of(video, score, prompts, index) or "",
                base_step=base_step,
                current_step=step,
                base=images.gif_data_uri(base_frames),
                current=images.gif_data_uri(current_frames),
                base_total=base_score.total if base_score else None,
                current_total=score.total if score else None,
                base_judge=base_score.judge_alignment if base_score else None,
                current_judge=score.judge_alignment if score else None,
                width=current_frames.shape[-1] * images.display_scale(current_frames.shape[-2], 128),
            )
        )
    return out


def report_for_run(
    run_dir: str | os.PathLike,
    *,
    critic: Any = None,
    step: int | None = None,
    max_videos: int = 2,
    saliency: SaliencyOptions | None = None,
    explain: bool = True,
) -> Report:
    """Report for a run directory: reward curves, base-vs-current samples, and per-question inspection of up to
    ``max_videos`` current samples with ``critic`` (rebuilt from the run's config.yaml when None)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a directory; give a run directory (runs/<name>) or a video file")
    config = read_config(run_dir)
    label = run_reward_label(config)
    report = Report(
        title=f"drf inspect: run {run_dir.name}",
        source=str(run_dir),
        charts=_curve_charts(run_dir, label) + _judge_charts(run_dir),
        reward_label=label,
    )
    steps = RunDir(run_dir).sample_steps()
    if step is not None and step not in steps:
        have = ", ".join(map(str, steps)) or "none"
        raise InputError(f"{run_dir}: no samples at step {step} (samples/step-{step}); steps with samples: {have}")
    if not steps:
        report.notes.append("the run has no sample videos yet (samples/step-N/)")
        return report
    current = step if step is not None else max(steps)
    base = 0 if 0 in steps else min(steps)
    prompts = (
        [p for p in config.get("prompts", []) if isinstance(p, str)] if isinstance(config.get("prompts"), list) else []
    )
    if base != current:
        report.comparisons = _comparisons(base, steps[base], current, steps[current], prompts)

    videos = sample_videos(steps[current])[: max(0, max_videos)]
    if not videos:
        return report
    config_file = RunDir(run_dir).config
    section = functools.partial(load_section, config_file) if config_file.is_file() else lambda *_: None
    if critic is None:
        critic, notes = load_critic_for(section(CriticConfig, "critic") or default_critic_config())
        report.notes += notes
    questions_config = section(QuestionsConfig, "questions") or QuestionsConfig()
    frames_config = section(FramesConfig, "sampling.frames")
    recorded = run_question_sets(run_dir)
    scores = read_scores(steps[current])

    for index, video in enumerate(videos):
        prompt = _prompt_of(video, scores.get(video.name), prompts, index)
        if not prompt:
            report.notes.append(f"{video.name}: prompt unknown (no scores.json entry, no config prompt); skipped")
            continue
        qset = recorded.get(normalize_prompt(prompt)) or question_set_for(prompt, config=questions_config)
        frames = read_video(video)
        title = f"step {current} · {video.name}"
        picked = frames_from_config(frames_config, frames.shape[0], index) if frames_config is not None else None
        if picked is not None:  # the critic saw only these frames during training; inspect what it saw
            frames = frames[picked]
            title += f" (frames {', '.join(map(str, picked))}, as scored in training)"
        report.videos.append(
            inspect_video(
                critic,
                frames,
                qset,
                title=title,
                aspect_weights=questions_config.aspect_weights,
                saliency=saliency,
                explain=explain,
                frame_numbers=picked,
            )
        )
    return report


def write_report(
    run_dir: str | os.PathLike,
    *,
    critic: Any = None,
    step: int | None = None,
    out: str | os.PathLike | None = None,
    max_videos: int = 2,
    saliency: SaliencyOptions | None = None,
    explain: bool = True,
) -> Path:
    """Build the run's report and write it to ``out`` (default ``run_dir/report.html``); returns the path.

    Trainers call this at the end of a run with their own critic, so nothing is loaded twice.
    """
    report = report_for_run(run_dir, critic=critic, step=step, max_videos=max_videos, saliency=saliency,
                            explain=explain)  # fmt: skip
    return save_html(build_report(report), out or RunDir(run_dir).report)
