"""``load_generator(model_config)``: the one door from trainers and commands to a video model, keyed by
``model.family``; the families drf knows (each adapter's ``Family``, registered here: one line per family) and the
``model:`` config section they read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from drf.errors import invalid
from drf.models import ltx, wan
from drf.models.base import Family, VideoGenerator

FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    """Make ``model.family: <family.name>`` load through ``family.build(config, device=...)`` and validate by its
    rules."""
    FAMILIES[family.name] = family


for _family in (wan.FAMILY, ltx.FAMILY):
    register_family(_family)


def load_generator(config: ModelConfig, device: str | torch.device = "cpu", with_lora: bool = True) -> VideoGenerator:
    """The video generator a ``model:`` section describes, on ``device``, frozen, with ``model.lora`` loaded and
    active (unless ``with_lora`` is False: a trainer loads it into the adapter it trains)."""
    config.validate()
    generator = FAMILIES[config.family].build(config, device=device)
    if config.lora and with_lora:
        generator.load_lora(config.lora)
    return generator


@dataclass
class ModelConfig:
    """Which video generator to load and the shape of the videos it makes."""

    family: str = field(
        default="wan",
        metadata={"help": "Generator family: the adapter load_generator builds (drf.models.registry): wan "
                  "(Wan 2.1/2.2) or ltx (LTX-Video)."},
    )
    path: str | None = field(
        default=None, metadata={"path": "model", "help": "Hub id or local diffusers directory of a pretrained model."}
    )
    tiny: str | None = field(
        default=None, metadata={"help": "Tiny preset of the family built from configs instead of `path` (wan-tiny, ltx-tiny, ...)."}
    )
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32", metadata={"help": "Weights and compute dtype of the generator."}
    )
    height: int = field(default=32, metadata={"help": "Video height in pixels (wan: multiple of 16; ltx: of 32)."})
    width: int = field(default=32, metadata={"help": "Video width in pixels (wan: multiple of 16; ltx: of 32)."})
    num_frames: int = field(
        default=9, metadata={"help": "Frames per video; wan needs 4n+1 (1, 5, 9, ... 81), ltx 8n+1 (9, 17, ... 161)."}
    )
    scheduler: Literal["euler", "unipc"] = field(
        default="euler", metadata={"help": "Flow-matching sampler: euler (differentiable chain) or unipc."}
    )
    shift: float = field(
        default=5.0, metadata={"help": "Flow shift of the sigma schedule (> 0); wan only (ltx shifts by the video's "
                               "token count, as LTXPipeline does)."}
    )  # fmt: skip
    negative_prompt: str = field(default="", metadata={"help": "Prompt for the unconditional branch of CFG."})
    max_sequence_length: int = field(
        default=512, metadata={"help": "Text-encoder tokens per prompt (LTX-Video was trained with 128)."}
    )
    lora: str = field(
        default="",
        metadata={"path": "file", "help": "A LoRA to start from: a run's lora/ folder (or any diffusers LoRA file of the family) "
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
                  "wan: frames: latent frame by latent frame; only the causal caches between frames grow with the clip "
                  "(64x64, 33 frames: 0.31x diffusers' peak, 81: 0.21x). segments: also groups ~sqrt(N) latent frames "
                  "and keeps only the caches at group starts (81 frames: 0.14x) for one more decode's time. ltx "
                  "(frames or none): frames checkpoints the VAE decoder's blocks (its decoder is not causal in time). "
                  "none: diffusers' decode, whose activations grow with every frame."},
    )  # fmt: skip
    attention_backend: str | None = field(
        default=None, metadata={"help": "Attention backend for the transformer (e.g. xformers); null = default."}
    )

    def validate(self) -> None:
        """One line naming the first invalid key; what the family takes is its own ``Family.check``."""
        if self.family not in FAMILIES:
            raise invalid("family", f"is {self.family!r}; expected one of {', '.join(sorted(FAMILIES))}")
        if self.path is not None and self.tiny is not None:
            raise invalid("path", "is set together with tiny; remove one (path loads a model, tiny builds a preset)")
        if self.path is None and self.tiny is None:
            raise invalid(
                "tiny", "or path must be set: tiny names a preset (e.g. wan-tiny), path a hub id or directory"
            )
        FAMILIES[self.family].check(self)
        if self.shift <= 0:
            raise invalid("shift", f"must be > 0 (got {self.shift})")
        if self.max_sequence_length < 1:
            raise invalid("max_sequence_length", f"must be >= 1 (got {self.max_sequence_length})")
