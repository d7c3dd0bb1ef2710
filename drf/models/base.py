"""The one door from samplers and trainers to a video model.

Trainers and the sampling chain talk to a ``VideoGenerator`` only, never to diffusers classes, so a new model family
is a new adapter in ``drf/models/`` plus its ``Family`` registration (``drf.models.registry``), and nothing else
changes. The protocol is deliberately narrow: prompts in, latents and velocities through, frames out; what is
particular to a family (expert names and the steps each owns, LoRA file layout, frame/size rules, schedulers, tiny
presets) is declared by its adapter here, never named by a trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from drf.errors import InputError, invalid


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
    """Encoded prompts: ``embeds [B, L, D]``, and ``negative_embeds`` when classifier-free guidance is on; ``mask`` and
    ``negative_mask`` ``[B, L]`` for families whose denoiser takes the text attention mask (LTX-Video)."""

    embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    guidance_scale: float
    mask: torch.Tensor | None = None
    negative_mask: torch.Tensor | None = None

    @property
    def do_cfg(self) -> bool:
        return self.negative_embeds is not None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Cond:
        def apply(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else fn(t)

        return Cond(
            fn(self.embeds),
            apply(self.negative_embeds),
            self.guidance_scale,
            apply(self.mask),
            apply(self.negative_mask),
        )

    def repeat_interleave(self, n: int) -> Cond:
        """Each prompt ``n`` times in a row: the layout of GRPO groups."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def select(self, rows: Any) -> Cond:
        """The prompts at ``rows`` (an index, slice or index tensor along the batch)."""
        return self._map(lambda t: t[rows])


class Experts(nn.ModuleDict):
    """Several denoisers of one model (Wan 2.2 A14B's two experts) trained together, by pipeline name; offers the
    methods a trainer calls on one diffusers transformer (adapters, gradient checkpointing, saving) by calling each
    expert's."""

    def add_adapter(self, config: Any) -> None:
        for module in self.values():
            module.add_adapter(config)

    def disable_adapters(self) -> None:
        for module in self.values():
            module.disable_adapters()

    def enable_adapters(self) -> None:
        for module in self.values():
            module.enable_adapters()

    def enable_gradient_checkpointing(self) -> None:
        for module in self.values():
            module.enable_gradient_checkpointing()

    def save_pretrained(self, directory: str | Path) -> None:
        for name, module in self.items():
            module.save_pretrained(Path(directory) / name)


@runtime_checkable
class VideoGenerator(Protocol):
    """A text-to-video flow-matching model.

    ``velocity`` applies classifier-free guidance internally; ``decode`` returns ``[B, T, 3, H, W]`` in [0, 1] and is
    differentiable; ``scheduler`` returns a fresh scheduler already set to ``num_steps`` (multistep schedulers keep
    state, so every rollout needs its own).

    ``expert_labels`` maps a ``model.train_experts`` value to the pipeline name of the denoiser it trains (empty for a
    one-denoiser family); ``lora_files`` names the file ``save_lora`` writes for each trained denoiser, so a trainer
    reads a LoRA folder back without knowing the family.
    """

    latent_layout: LatentLayout
    expert_labels: Mapping[str, str]
    lora_files: Mapping[str, str]
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

    def denoisers(self) -> list[nn.Module]: ...

    def save_lora(self, out_dir: str | Path) -> Path: ...

    def load_lora(self, path: str | Path) -> None: ...


def nearest_valid(n: int, step: int, offset: int) -> str:
    """The valid value(s) of the form ``step*i + offset`` (>= ``step`` or 1) closest to ``n``: ``"9"`` or ``"5 or 9"``."""
    below = (n - offset) // step * step + offset
    above = below + step
    smallest = max(offset, step if offset == 0 else offset)
    if below < smallest or n - below > above - n:
        return str(max(above, smallest))
    return str(below) if n - below < above - n else f"{below} or {above}"


@dataclass(frozen=True)
class Family:
    """What drf knows of a model family before it loads one: how to build it and which ``model:`` settings it takes.

    An adapter module declares one; ``drf.models.registry`` registers it, and ``ModelConfig.validate`` checks a config
    against it (one line naming the key and the nearest valid value) before anything is loaded.
    """

    name: str
    build: Callable[..., VideoGenerator]  # build(model config, device=...) -> VideoGenerator
    frame_step: int  # valid num_frames are frame_step * n + 1 (the VAE's temporal compression)
    size_multiple: int  # valid heights and widths are multiples of this (VAE spatial compression x patch)
    schedulers: tuple[str, ...]
    tiny_presets: Mapping[str, Any]  # model.tiny name -> its config dicts (drf.models.tiny)
    decode_checkpointing: tuple[str, ...] = ("frames", "segments", "none")
    expert_labels: tuple[str, ...] = field(default=())  # model.train_experts values besides auto

    def check(self, cfg: Any) -> None:
        """Raise ``invalid(key, ...)`` for the first ``model:`` setting this family cannot take."""
        if cfg.tiny is not None and cfg.tiny not in self.tiny_presets:
            raise invalid(
                "tiny", f"is {cfg.tiny!r}; the {self.name} presets are {', '.join(sorted(self.tiny_presets))}"
            )
        step, multiple = self.frame_step, self.size_multiple
        if cfg.num_frames < 1 or (cfg.num_frames - 1) % step:
            fix = nearest_valid(cfg.num_frames, step, 1)
            raise invalid("num_frames", f"must be {step}n+1 (got {cfg.num_frames}); try {fix}")
        for key in ("height", "width"):
            size = getattr(cfg, key)
            if size < multiple or size % multiple:
                raise invalid(
                    key, f"must be a multiple of {multiple} (got {size}); try {nearest_valid(size, multiple, 0)}"
                )
        if cfg.scheduler not in self.schedulers:
            raise invalid("scheduler", f"is {cfg.scheduler!r}; {self.name} takes {' | '.join(self.schedulers)}")
        if cfg.decode_checkpointing not in self.decode_checkpointing:
            raise invalid("decode_checkpointing", f"is {cfg.decode_checkpointing!r}; {self.name} takes "
                          f"{' | '.join(self.decode_checkpointing)}")  # fmt: skip
        if cfg.train_experts != "auto" and cfg.train_experts not in self.expert_labels:
            have = " | ".join(("auto", *self.expert_labels))
            raise invalid("train_experts", f"is {cfg.train_experts!r}; {self.name} takes {have}")
