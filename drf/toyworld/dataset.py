"""Render a seeded set of toy-world scenes into arrays that training scripts load without the renderer.

One ``.npz`` holds every video as uint8 frames with its exact depth, poses and intrinsics, the prompt, and the scene
itself as JSON (so ground-truth answers can be recomputed for any question later).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from drf.errors import InputError
from drf.toyworld.grammar import prompt_for
from drf.toyworld.render import render
from drf.toyworld.scene import Scene, sample_scenes


@dataclass
class ToyDataset:
    """N rendered scenes. video [N,T,3,H,W] uint8; depth [N,T,H,W] float32 (sky = render.FAR); c2w [N,T,4,4];
    K [N,T,3,3]; prompts and scenes are lists of length N."""

    video: Tensor
    depth: Tensor
    c2w: Tensor
    K: Tensor
    prompts: list[str]
    scenes: list[Scene]

    def __len__(self) -> int:
        return len(self.prompts)

    def frames(self, index: int) -> Tensor:
        """Video ``index`` as float frames [T,3,H,W] in [0,1]."""
        return self.video[index].float() / 255.0


def build_dataset(
    count: int,
    seed: int = 0,
    split: str | None = "train",
    num_frames: int = 17,
    height: int = 64,
    width: int = 64,
    supersample: int = 2,
) -> ToyDataset:
    """Sample ``count`` scenes of ``split`` from ``seed`` and render them (deterministic)."""
    if count < 1:
        raise InputError(f"dataset size must be at least 1, got {count}")
    scenes = sample_scenes(count, seed=seed, split=split, num_frames=num_frames)
    outs = [render(s, num_frames, height, width, supersample) for s in scenes]
    return ToyDataset(
        video=torch.stack([(o.rgb * 255).round().to(torch.uint8) for o in outs]),
        depth=torch.stack([o.depth for o in outs]),
        c2w=torch.stack([o.c2w for o in outs]),
        K=torch.stack([o.K for o in outs]),
        prompts=[prompt_for(s) for s in scenes],
        scenes=scenes,
    )


def save_dataset(data: ToyDataset, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        video=data.video.numpy(),
        depth=data.depth.numpy(),
        c2w=data.c2w.numpy(),
        K=data.K.numpy(),
        prompts=np.array(data.prompts),
        scenes=np.array([json.dumps(s.to_dict()) for s in data.scenes]),
    )
    return path


def load_dataset(path: str | Path) -> ToyDataset:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"toy dataset {path} does not exist; build one with drf.toyworld.dataset.build_dataset")
    try:
        with np.load(path) as z:
            return ToyDataset(
                video=torch.from_numpy(z["video"]),
                depth=torch.from_numpy(z["depth"]),
                c2w=torch.from_numpy(z["c2w"]),
                K=torch.from_numpy(z["K"]),
                prompts=[str(p) for p in z["prompts"]],
                scenes=[Scene.from_dict(json.loads(str(s))) for s in z["scenes"]],
            )
    except (KeyError, ValueError, OSError) as err:
        raise InputError(f"{path} is not a toy dataset (npz with video, depth, c2w, K, prompts, scenes): {err}") from None
