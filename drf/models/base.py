"""The one door from samplers and trainers to a video model.

Trainers and the sampling chain talk to a ``VideoGenerator`` only, never to diffusers classes, so a new model family
is a new adapter in ``drf/models/`` and nothing else changes. The protocol is deliberately narrow: prompts in,
latents and velocities through, frames out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from drf.errors import InputError


@dataclass(frozen=True)
class LatentLayout:
    """How pixel videos map to latents: ``[B, channels, F, H/spatial, W/spatial]`` with causal temporal compression.

    A causal video VAE encodes the first frame alone and every later group of ``temporal_scale`` frames into one
    latent frame, so valid pixel frame counts are ``temporal_scale * n + 1``.
    """

    channels: int
    temporal_scale: int
    spatial_scale: int
    patch_size: tuple[int, int] = (1, 1)

    def latent_prefix_for(self, frame_index: int) -> int:
        """How many latent frames a causal decode needs to produce pixel frame ``frame_index``."""
        return (frame_index + self.temporal_scale - 1) // self.temporal_scale + 1

    def check_video_size(self, num_frames: int, height: int, width: int) -> None:
        """Reject sizes the VAE/transformer cannot take, with the nearest valid values in the message."""
        t = self.temporal_scale
        if num_frames < 1 or (num_frames - 1) % t:
            lower = max(1, (num_frames - 1) // t * t + 1)
            raise InputError(f"num_frames={num_frames} is not {t}n+1, which this VAE needs; use {lower} or {lower + t}")
        multiple = self.spatial_scale * max(self.patch_size)
        for name, value in (("height", height), ("width", width)):
            if value < multiple or value % multiple:
                lower = value // multiple * multiple
                fix = f"{lower} or {lower + multiple}" if lower else f"{multiple}"
                raise InputError(f"{name}={value} must be a positive multiple of {multiple}; use {fix}")


@dataclass
class Cond:
    """Encoded prompts: ``embeds [B, L, D]``, and ``negative_embeds`` when classifier-free guidance is on."""

    embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    guidance_scale: float

    @property
    def do_cfg(self) -> bool:
        return self.negative_embeds is not None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def repeat_interleave(self, n: int) -> Cond:
        """Each prompt ``n`` times in a row: the layout of GRPO groups."""
        neg = None if self.negative_embeds is None else self.negative_embeds.repeat_interleave(n, dim=0)
        return Cond(self.embeds.repeat_interleave(n, dim=0), neg, self.guidance_scale)


@runtime_checkable
class VideoGenerator(Protocol):
    """A text-to-video flow-matching model.

    ``velocity`` applies classifier-free guidance internally; ``decode`` returns ``[B, T, 3, H, W]`` in [0, 1] and is
    differentiable; ``scheduler`` returns a fresh scheduler already set to ``num_steps`` (multistep schedulers keep
    state, so every rollout needs its own).
    """

    latent_layout: LatentLayout
    height: int
    width: int
    num_frames: int

    def encode_prompts(self, prompts: list[str], guidance_scale: float) -> Cond: ...

    def init_latents(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def scheduler(self, num_steps: int) -> Any: ...

    def velocity(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Cond) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor, frame_indices: list[int] | None = None) -> torch.Tensor: ...

    def expert_names(self) -> list[str]: ...

    def expert_of_steps(self, num_steps: int) -> list[str]: ...

    def expert_at(self, timestep: float) -> str: ...

    def trainable_module(self, experts: Sequence[str] = ("transformer",)) -> nn.Module: ...

    def save_lora(self, out_dir: str | Path) -> Path: ...

    def load_lora(self, path: str | Path) -> None: ...
