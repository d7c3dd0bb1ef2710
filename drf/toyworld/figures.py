"""``drf toyworld figures``: the pictures behind every toy-world claim, regenerated from the shipped models.

- ``toyworld_vae.png``: held-out renders above their VAE round trips (every palette colour appears);
- ``toyworld_t2v.png``: samples of the toy T2V model on held-out prompts, the prompt above each row and the oracle's
  alignment score beside it;
- ``toyworld_t2v_probes.png``: the T2V run's probes against CPU minutes (loss per noise level, text gain, object
  present), from its manifest entry or, while it trains, from its resumable state;
- ``toyworld_demo.png`` (from a finished run, ``--run runs/demo``): the run's first held-out evaluation videos before
  and after fine-tuning (same prompts, same noise), each with the oracle's alignment score.

Frames are drawn at twice their size with nearest-neighbour scaling, so what a person sees is what the oracle read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from drf.errors import InputError
from drf.report.images import pick_frames
from drf.run_dir import RunDir
from drf.toyworld import oracle
from drf.toyworld.assets import ASSETS_DIR, TRAIN_STATE_DIR, load_manifest, load_toy_generator, toy_vae_path
from drf.toyworld.scene import WORLD_COLORS
from drf.toyworld.train.data import Clips, clips
from drf.toyworld.train.t2v import T2VTrainConfig, sample_videos
from drf.toyworld.train.vae import round_trips
from drf.video_io import read_video
from prompts.registry import decompose

FIGURE_DIR = Path(__file__).resolve().parents[2] / "docs" / "img"
SCALE = 2
PAD = 4
LABEL_HEIGHT = 16
NOTE_WIDTH = 150
# Held-out scenes for figures: the eval split of a seed no training run or test draws from.
FIGURE_SEED = 901


@dataclass
class Row:
    """One strip of a figure: ``frames`` [T,3,H,W] in [0,1], a label drawn above and a note drawn beside it."""

    frames: Tensor
    label: str = ""
    note: str = ""


def _font(size: int = 11) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def grid(rows: list[Row], frames: int = 5) -> Image.Image:
    """Rows of ``frames`` evenly spaced frames each, labels above, notes to the right."""
    _, _, h, w = rows[0].frames.shape
    cell_w, cell_h = w * SCALE, h * SCALE
    width = PAD + frames * (cell_w + PAD) + NOTE_WIDTH
    row_h = LABEL_HEIGHT + cell_h + PAD
    image = Image.new("RGB", (width, PAD + len(rows) * row_h), "white")
    draw = ImageDraw.Draw(image)
    font = _font()
    for r, row in enumerate(rows):
        top = PAD + r * row_h
        draw.text((PAD, top + 2), row.label, fill="black", font=font)
        for c, index in enumerate(pick_frames(row.frames.shape[0], frames)):
            pixels = (row.frames[index].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            tile = Image.fromarray(np.ascontiguousarray(pixels)).resize((cell_w, cell_h), Image.NEAREST)
            image.paste(tile, (PAD + c * (cell_w + PAD), top + LABEL_HEIGHT))
        draw.text((PAD + frames * (cell_w + PAD) + 4, top + LABEL_HEIGHT + cell_h // 2 - 6), row.note, fill="black",
                  font=font)
    return image


def _eval_clips_covering_colors(count: int, seed: int):
    """``count`` held-out clips chosen so that every palette colour appears at least once."""
    pool = clips(max(4 * count, 40), seed, "eval")
    chosen: list[int] = []
    missing = set(WORLD_COLORS)
    for i, scene in enumerate(pool.scenes):
        colors = {o.color for o in scene.objects}
        if colors & missing:
            chosen.append(i)
            missing -= colors
    for i in range(len(pool)):
        if len(chosen) >= count:
            break
        if i not in chosen:
            chosen.append(i)
    return pool, sorted(chosen[:count])


def vae_figure(path: Path, scenes: int = 6, root: Path | None = None) -> Path:
    """Renders above their VAE round trips for ``scenes`` held-out scenes."""
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(toy_vae_path(root)).eval()
    pool, chosen = _eval_clips_covering_colors(scenes, FIGURE_SEED)
    rows = []
    for i in chosen:
        frames = pool.frames(i)
        with torch.no_grad():
            trip = round_trips(vae, _subset(pool, [i]), torch.device("cpu"))[0]
        rows.append(Row(frames, pool.prompts[i][:110], "render"))
        rows.append(Row(trip, "", "VAE round trip"))
    return _save(grid(rows), path)


def _subset(data, index: list[int]):
    return Clips(data.video[index], data.objects[index], [data.prompts[i] for i in index],
                 [data.scenes[i] for i in index])


def t2v_figure(path: Path, prompts: int = 12, root: Path | None = None, seed: int = FIGURE_SEED) -> Path:
    """Samples of the shipped T2V model on ``prompts`` held-out prompts (the demo's sampling settings), each with its
    oracle alignment."""
    settings = T2VTrainConfig()
    held_out = clips(prompts, seed, "eval")
    generator = load_toy_generator(root)
    videos = sample_videos(generator, held_out.prompts, settings.eval_steps, settings.guidance, seed)
    rows = []
    for video, prompt in zip(videos, held_out.prompts):
        result = oracle.alignment(oracle.analyze(video), decompose(prompt))
        rows.append(Row(video, prompt[:110], f"alignment {result['mean']:.2f}"))
    return _save(grid(rows), path)


def demo_figure(run: Path, path: Path, prompts: int = 8) -> Path:
    """Base (first evaluation) above fine-tuned (last evaluation) videos of ``run`` for its first ``prompts`` held-out
    prompts, in the run's order (not picked by their scores), with the oracle's alignment of each."""
    run_dir = RunDir(run)
    steps = run_dir.sample_steps()
    if len(steps) < 2:
        raise InputError(f"{run}: needs evaluations at two steps to compare (found {sorted(steps) or 'none'})")
    first, last = min(steps), max(steps)
    before, after = (json.loads(run_dir.scores(s).read_text()) for s in (first, last))
    rows = []
    for base, tuned in list(zip(before, after))[:prompts]:
        for entry, step, label in ((base, first, base["prompt"][:110]), (tuned, last, "")):
            frames = read_video(steps[step] / entry["video"])
            rows.append(Row(frames, label, f"step {step}: alignment {entry['oracle']['alignment']:.2f}"))
    return _save(grid(rows), path)


PROBE_PANEL = (300, 180)  # width, height of one chart panel in pixels
_SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def _line_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, xs: list[float],
                series: dict[str, list[float]], y_range: tuple[float, float]) -> None:
    """One chart: ``series`` (name -> values at ``xs``) as lines in ``box`` (left, top, right, bottom), y axis from
    ``y_range``, with the title, the axis ends and a legend."""
    left, top, right, bottom = box
    font = _font(10)
    draw.text((left, top - 14), title, fill="black", font=font)
    draw.rectangle(box, outline="#888888")
    lo, hi = y_range
    x_lo, x_hi = min(xs), max(max(xs), min(xs) + 1e-9)

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * (right - left),
                bottom - (min(max(y, lo), hi) - lo) / (hi - lo) * (bottom - top))

    for i, (name, values) in enumerate(series.items()):
        color = _SERIES_COLORS[i % len(_SERIES_COLORS)]
        points = [at(x, y) for x, y in zip(xs, values)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for p in points:
            draw.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=color)
        draw.text((right + 4, top + 12 * i), name, fill=color, font=font)
    draw.text((left - 30, top - 2), f"{hi:g}", fill="black", font=font)
    draw.text((left - 30, bottom - 10), f"{lo:g}", fill="black", font=font)
    draw.text((left, bottom + 2), f"{x_lo:g}", fill="black", font=font)
    draw.text((right - 40, bottom + 2), f"{x_hi:g} CPU-min", fill="black", font=font)


def probes_figure(probes: list[dict], path: Path) -> Path:
    """The T2V probes against CPU minutes: loss per sigma bucket, text gain, object present (with the decision
    lines the recipe sets: text gain 0.4 and object present 0.3 at 20 CPU-minutes)."""
    if not probes:
        raise InputError("no T2V probes to draw (the run has not reached its first probe)")
    xs = [p["cpu_minutes"] for p in probes]
    w, h = PROBE_PANEL
    image = Image.new("RGB", (3 * (w + 120) + 40, h + 60), "white")
    draw = ImageDraw.Draw(image)
    # Log scale: the untrained loss is ten times the trained one, and the buckets part only once it falls.
    losses = {f"sigma {k}": [math.log10(p["loss_by_sigma"][k]) for p in probes] for k in probes[0]["loss_by_sigma"]}
    low, high = min(min(v) for v in losses.values()), max(max(v) for v in losses.values())
    panels = (
        ("log10 loss per noise level (held-out clips)", losses, (math.floor(low * 10) / 10, math.ceil(high * 10) / 10)),
        ("text gain (own vs shuffled prompt, sigma 0.7)", {"text gain": [p["text_gain"] for p in probes],
                                                          "goal 0.4": [0.4] * len(xs)}, (-0.1, 1.0)),
        ("object present (EMA samples, held-out prompts)", {"object present": [p["object_present"] for p in probes],
                                                           "goal 0.3": [0.3] * len(xs)}, (0.0, 1.0)),
    )
    for i, (title, series, y_range) in enumerate(panels):
        left = 40 + i * (w + 120)
        _line_panel(draw, (left, 30, left + w, 30 + h), title, xs, series, y_range)
    return _save(image, path)


def t2v_probes(root: Path | None = None) -> list[dict]:
    """The T2V probes: from the manifest entry of a finished run, else from the resumable state of a running one."""
    root = Path(root or ASSETS_DIR)
    state = root / TRAIN_STATE_DIR / "t2v.pt"
    if state.is_file():
        return torch.load(state, weights_only=False).get("probes", [])
    return load_manifest(root).get("models", {}).get("t2v", {}).get("probes", [])


def _save(image: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


FIGURES = ("vae", "t2v", "probes")


def write_figures(out: Path = FIGURE_DIR, root: Path | None = None, only: tuple[str, ...] = FIGURES) -> list[Path]:
    """Regenerate the toy-world figures named in ``only`` into ``out``."""
    out = Path(out)
    makers = {
        "vae": lambda: vae_figure(out / "toyworld_vae.png", root=root),
        "t2v": lambda: t2v_figure(out / "toyworld_t2v.png", root=root),
        "probes": lambda: probes_figure(t2v_probes(root), out / "toyworld_t2v_probes.png"),
    }
    return [makers[name]() for name in only]
