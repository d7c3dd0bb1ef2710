"""Which frames of a video to decode and show the critic.

Decoding and scoring every frame is the most memory-hungry part of a reward step; a policy picks a few frames
instead. Indices are pixel-frame indices, so they mean the same thing whatever the VAE's temporal compression, and
the adapter decodes only the causal latent prefix that covers them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from drf.errors import ConfigError, invalid

FRAME_POLICIES = ("all", "first", "middle", "last", "first_middle_last", "every_n", "random_n")


def select_frames(policy: str, num_frames: int, n: int = 1, seed: int = 0) -> list[int] | None:
    """Sorted frame indices for ``policy``, or ``None`` for all frames (decode everything, no gather)."""
    if n < 1:
        raise ConfigError(f"frames.n must be >= 1, got {n}")
    last, middle = num_frames - 1, (num_frames - 1) // 2
    if policy == "all":
        return None
    if policy == "first":
        return [0]
    if policy == "middle":
        return [middle]
    if policy == "last":
        return [last]
    if policy == "first_middle_last":
        return sorted({0, middle, last})
    if policy == "every_n":
        return list(range(0, num_frames, n))
    if policy == "random_n":
        return sorted(random.Random(seed).sample(range(num_frames), min(n, num_frames)))
    raise ConfigError(f"unknown frame policy {policy!r}; choose one of {', '.join(FRAME_POLICIES)}")


def frames_from_config(cfg: Any, num_frames: int, rollout_index: int = 0) -> list[int] | None:
    """Frame indices for one rollout from a ``FramesConfig``; random-n reseeds per rollout, reproducibly."""
    return select_frames(cfg.policy, num_frames, cfg.n, seed=cfg.seed * 1_000_003 + rollout_index)


@dataclass
class FramesConfig:
    """Which decoded frames the rewards see."""

    policy: Literal["all", "first", "middle", "last", "first_middle_last", "every_n", "random_n"] = field(
        default="all", metadata={"help": "Frame selection; every_n and random_n use n."}
    )
    n: int = field(default=1, metadata={"help": "Stride (every_n) or count (random_n) of frames."})
    seed: int = field(default=0, metadata={"help": "Seed of the random_n draw."})

    def validate(self) -> None:
        if self.n < 1:
            raise invalid("n", f"must be >= 1 (got {self.n})")
