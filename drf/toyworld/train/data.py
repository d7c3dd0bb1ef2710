"""Rendered toy-world clips as training tensors, cached on disk so each training script renders them only once.

The cache keeps only what training needs (uint8 frames, the union of the objects' masks, prompts, scenes as JSON) —
depth and poses would make a few thousand clips several hundred MB. It is keyed by the sampling parameters and a
digest of the sampler, renderer and grammar sources, so clips of an earlier world are never read back as this one's. Clips are rendered without supersampling: at
64x64 the anti-aliasing costs four times the rendering for a difference the toy models cannot reproduce anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from drf.toyworld import grammar as grammar_module
from drf.toyworld import render as render_module
from drf.toyworld import scene as scene_module
from drf.toyworld.grammar import prompt_for
from drf.toyworld.render import render
from drf.toyworld.scene import WORLD_FRAMES, Scene, sample_scenes

CACHE_ENV = "DRF_TOYWORLD_CACHE"


def cache_dir() -> Path:
    """``$DRF_TOYWORLD_CACHE`` or ``~/.cache/drf/toyworld`` (outside the repository, never committed)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "drf" / "toyworld")


@dataclass
class Clips:
    """N rendered clips: video [N,T,3,H,W] uint8, objects [N,T,H,W] bool (pixels of any object), one prompt and one
    scene per clip."""

    video: Tensor
    objects: Tensor
    prompts: list[str]
    scenes: list[Scene]

    def __len__(self) -> int:
        return len(self.prompts)

    def frames(self, index: Tensor | list[int] | int) -> Tensor:
        """Clips ``index`` as float frames [B,T,3,H,W] (or [T,3,H,W] for an int) in [0,1]."""
        return self.video[index].float() / 255.0


def _source_digest() -> str:
    digest = hashlib.sha256()
    for module in (scene_module, render_module, grammar_module):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def clips(
    count: int,
    seed: int,
    split: str,
    num_frames: int = WORLD_FRAMES,
    size: int = 64,
    supersample: int = 1,
    use_cache: bool = True,
) -> Clips:
    """``count`` clips of ``split`` drawn from ``seed`` (deterministic), rendered once and then read from the cache."""
    stem = f"clips-{_source_digest()}-{split}-{seed}-"
    suffix = f"-{num_frames}x{size}-ss{supersample}.pt"
    path = cache_dir() / f"{stem}{count}{suffix}"
    cached = _cached_superset(stem, suffix, count) if use_cache else None
    data = torch.load(cached, weights_only=True) if cached is not None else {}
    if data:
        scenes = [Scene.from_dict(json.loads(s)) for s in data["scenes"][:count]]
        return Clips(data["video"][:count], data["objects"][:count], list(data["prompts"][:count]), scenes)
    scenes = sample_scenes(count, seed=seed, split=split, num_frames=num_frames)
    result = render_clips(scenes, num_frames, size, supersample)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        scenes_json = [json.dumps(s.to_dict()) for s in result.scenes]
        payload = {"video": result.video, "objects": result.objects, "prompts": result.prompts, "scenes": scenes_json}
        torch.save(payload, tmp)
        tmp.replace(path)
    return result


def render_clips(scenes: list[Scene], num_frames: int = WORLD_FRAMES, size: int = 64, supersample: int = 1) -> Clips:
    """Render ``scenes`` into training tensors (no cache)."""
    videos, objects = [], []
    for scene in scenes:
        out = render(scene, num_frames, size, size, supersample)
        videos.append((out.rgb * 255).round().to(torch.uint8))
        objects.append(out.masks.any(1))
    return Clips(torch.stack(videos), torch.stack(objects), [prompt_for(s) for s in scenes], scenes)


def _cached_superset(stem: str, suffix: str, count: int) -> Path | None:
    """The smallest cached file of the same draw with at least ``count`` clips: scene i depends only on (seed, i),
    so its first ``count`` clips are exactly the ones asked for."""
    found = []
    for path in cache_dir().glob(f"{stem}*{suffix}"):
        size = path.name[len(stem) : -len(suffix)]
        if size.isdigit() and int(size) >= count:
            found.append((int(size), path))
    return min(found)[1] if found else None
