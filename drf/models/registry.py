"""``load_generator(model_config)``: the one door from trainers and commands to a video model, keyed by
``model.family``, and the ``model:`` config section it reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from drf.errors import invalid
from drf.models.base import VideoGenerator
from drf.models.wan import WanGenerator

# family -> build(model config, device) -> VideoGenerator
GENERATORS: dict[str, Callable[..., VideoGenerator]] = {"wan": WanGenerator.from_config}


def register_generator(family: str, build: Callable[..., VideoGenerator]) -> None:
    """Make ``model.family: <family>`` load through ``build(config, device=...)``."""
    GENERATORS[family] = build


def load_generator(config: ModelConfig, device: str | torch.device = "cpu", with_lora: bool = True) -> VideoGenerator:
    """The video generator a ``model:`` section describes, on ``device``, frozen, with ``model.lora`` loaded and
    active (unless ``with_lora`` is False: a trainer loads it into the adapter it trains)."""
    config.validate()
    generator = GENERATORS[config.family](config, device=device)
    if config.lora and with_lora:
        generator.load_lora(config.lora)
    return generator


def _nearest(n: int, step: int, offset: int) -> str:
    """The valid value(s) of the form ``step*i + offset`` (>= ``step`` or 1) closest to ``n``: ``"9"`` or ``"5 or 9"``."""
    below = (n - offset) // step * step + offset
    above = below + step
    smallest = max(offset, step if offset == 0 else offset)
    if below < smallest or n - below > above - n:
        return str(max(above, smallest))
    return str(below) if n - below < above - n else f"{below} or {above}"


@dataclass
class ModelConfig:
    """Which video generator to load and the shape of the videos it makes."""

    family: str = field(
        default="wan",
        metadata={"help": "Generator family: the adapter load_generator builds (drf.models.registry; wan)."},
    )
    path: str | None = field(
        default=None, metadata={"path": "model", "help": "Hub id or local diffusers directory of a pretrained model."}
    )
    tiny: str | None = field(
        default=None, metadata={"help": "Tiny preset built from configs instead of `path` (e.g. wan-tiny)."}
    )
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32", metadata={"help": "Weights and compute dtype of the generator."}
    )
    height: int = field(default=32, metadata={"help": "Video height in pixels (multiple of 16)."})
    width: int = field(default=32, metadata={"help": "Video width in pixels (multiple of 16)."})
    num_frames: int = field(default=9, metadata={"help": "Frames per video; Wan needs 4n+1 (1, 5, 9, ... 81)."})
    scheduler: Literal["euler", "unipc"] = field(
        default="euler", metadata={"help": "Flow-matching sampler: euler (differentiable chain) or unipc."}
    )
    shift: float = field(default=5.0, metadata={"help": "Flow shift of the sigma schedule (> 0)."})
    negative_prompt: str = field(default="", metadata={"help": "Prompt for the unconditional branch of CFG."})
    max_sequence_length: int = field(default=512, metadata={"help": "Text-encoder tokens per prompt."})
    lora: str = field(
        default="",
        metadata={"path": "file", "help": "A LoRA to start from: a run's lora/ folder (or any diffusers Wan LoRA "
                  "file): sampled with, or trained further by a LoRA run of the same rank and targets."},
    )  # fmt: skip
    train_experts: Literal["auto", "high_noise", "low_noise", "both"] = field(
        default="auto",
        metadata={"help": "Wan 2.2 A14B: which expert(s) a run trains (each its own LoRA or full weights). auto: "
                  "those that run the steps the recipe trains (gradient window, SDE window or NFT noise levels)."},
    )  # fmt: skip
    decode_checkpointing: Literal["frames", "segments", "none"] = field(
        default="frames",
        metadata={"help": "A decode with gradient, recomputed in backward for memory (same frames and gradients). "
                  "frames: latent frame by latent frame; only the causal caches between frames grow with the clip "
                  "(64x64, 33 frames: 0.31x diffusers' peak, 81: 0.21x). segments: also groups ~sqrt(N) latent frames "
                  "and keeps only the caches at group starts (81 frames: 0.14x) for one more decode's time. none: "
                  "diffusers' decode, whose activations grow with every frame."},
    )  # fmt: skip
    attention_backend: str | None = field(
        default=None, metadata={"help": "Attention backend for the transformer (e.g. xformers); null = default."}
    )

    def validate(self) -> None:
        if self.family not in GENERATORS:
            raise invalid("family", f"is {self.family!r}; expected one of {', '.join(sorted(GENERATORS))}")
        if self.path is not None and self.tiny is not None:
            raise invalid("path", "is set together with tiny; remove one (path loads a model, tiny builds a preset)")
        if self.path is None and self.tiny is None:
            raise invalid(
                "tiny", "or path must be set: tiny names a preset (e.g. wan-tiny), path a hub id or directory"
            )
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise invalid("num_frames", f"must be 4n+1 (got {self.num_frames}); try {_nearest(self.num_frames, 4, 1)}")
        for key in ("height", "width"):
            size = getattr(self, key)
            if size < 16 or size % 16:
                raise invalid(key, f"must be a multiple of 16 (got {size}); try {_nearest(size, 16, 0)}")
        if self.shift <= 0:
            raise invalid("shift", f"must be > 0 (got {self.shift})")
        if self.max_sequence_length < 1:
            raise invalid("max_sequence_length", f"must be >= 1 (got {self.max_sequence_length})")
