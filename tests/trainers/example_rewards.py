"""A user's own rewards, as the ``python:`` entries of a ``rewards:`` list name them (docs/trainer.md shows the same)."""

from __future__ import annotations

import torch


def brightness(frames: torch.Tensor, prompts: list[str], **context) -> torch.Tensor:
    """Mean pixel value of each video: frames [B,T,3,H,W] in [0,1] -> [B] (differentiable)."""
    return frames.mean(dim=(1, 2, 3, 4))


def latent_energy(latents: torch.Tensor, prompts: list[str], **context) -> torch.Tensor:
    """Minus the mean square of each video's final latents -> [B] (reads latents: nothing is decoded for it)."""
    return -latents.float().pow(2).flatten(1).mean(1)


NOT_CALLABLE = 3


SEEDS_SEEN: list[list[int] | None] = []


def seed_recorder(frames: torch.Tensor, prompts: list[str], seeds: list[int] | None = None, **context) -> torch.Tensor:
    """Zero for every video; notes the ``seeds`` the trainer handed to the rewards (tests read ``SEEDS_SEEN``)."""
    SEEDS_SEEN.append(seeds)
    return frames.mean(dim=(1, 2, 3, 4)) * 0
