"""``drf toyworld figures``: the pictures behind every toy-world claim, regenerated from the shipped models.

- ``toyworld_vae.png``: held-out renders above their VAE round trips (every palette colour appears);
- ``toyworld_t2v.png``: samples of the toy T2V model on held-out prompts, the prompt above each row and the oracle's
  alignment score beside it;
- ``toyworld_demo.png`` (from a finished run, ``--run runs/demo``): the run's first held-out evaluation videos before
  and after fine-tuning (same prompts, same noise), each with the oracle's alignment score.

Frames are drawn at twice their size with nearest-neighbour scaling, so what a person sees is what the oracle read.
"""

from __future__ import annotations

import json
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
from drf.toyworld.assets import load_toy_generator, toy_generator_path
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

    vae = AutoencoderKLWan.from_pretrained(toy_generator_path(root) / "vae").eval()
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


def _save(image: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_figures(out: Path = FIGURE_DIR, root: Path | None = None) -> list[Path]:
    """Regenerate every toy-world figure into ``out``."""
    out = Path(out)
    return [vae_figure(out / "toyworld_vae.png", root=root), t2v_figure(out / "toyworld_t2v.png", root=root)]
