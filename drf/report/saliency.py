"""Gradient saliency: where in the frames each question's reward would change most.

A trainer pushes pixels along ``d reward / d frames``; showing the magnitude of that gradient per question tells a
person which regions a question actually looks at (and whether that is the object it asks about). The module stays
generic: it takes ``score_fn(frames [B,T,3,H,W]) -> rewards [B,Q]`` — a closure over any critic and its question
sets — so it knows nothing about critics.

SmoothGrad (``samples > 1``) averages the gradient magnitude over copies of the frames with Gaussian noise added,
which suppresses the speckle of a single gradient without moving the mass elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def reward_gradient_magnitude(
    score_fn: ScoreFn,
    frames: torch.Tensor,
    *,
    samples: int = 1,
    noise_std: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """frames [B,T,3,H,W] -> |d reward_q / d frames| summed over channels, [B,Q,T,H,W] (float32, unnormalised).

    One forward per noise sample and one backward per question; videos of a batch are assumed independent (the
    gradient of ``rewards[:, q].sum()`` with respect to video b is the gradient of video b's own reward).
    A question whose reward does not depend on the frames gets an all-zero map.
    """
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must be [B,T,3,H,W], got {tuple(frames.shape)}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    base = frames.detach().float()
    total: torch.Tensor | None = None
    for _ in range(samples):
        x = base
        if samples > 1 and noise_std > 0:
            noise = torch.randn(base.shape, generator=generator, device=base.device, dtype=base.dtype)
            x = base + noise_std * noise
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            rewards = score_fn(x)
            if rewards.dim() != 2 or rewards.shape[0] != base.shape[0]:
                raise ValueError(
                    f"score_fn must return rewards [B,Q] with B={base.shape[0]}, got {tuple(rewards.shape)}"
                )
            maps = []
            num_questions = rewards.shape[1]
            for q in range(num_questions):
                grad = None
                if rewards.requires_grad:
                    (grad,) = torch.autograd.grad(
                        rewards[:, q].sum(), x, retain_graph=q < num_questions - 1, allow_unused=True
                    )
                if grad is None:
                    grad = torch.zeros_like(x)
                maps.append(grad.detach().abs().sum(dim=2))  # [B,T,H,W]
        b, t, _, h, w = base.shape
        stacked = torch.stack(maps, dim=1) if maps else base.new_zeros(b, 0, t, h, w)
        total = stacked if total is None else total + stacked
    return total / samples


def smooth(maps: torch.Tensor, kernel: int) -> torch.Tensor:
    """Box-blur [..., H, W] maps with an odd ``kernel`` (1 = unchanged); edges average only the pixels that exist."""
    if kernel <= 1:
        return maps
    if kernel % 2 == 0:
        raise ValueError(f"smoothing kernel must be odd, got {kernel}")
    shape = maps.shape
    flat = maps.reshape(-1, 1, shape[-2], shape[-1])
    out = F.avg_pool2d(flat, kernel, stride=1, padding=kernel // 2, count_include_pad=False)
    return out.reshape(shape)


def normalise_per_question(maps: torch.Tensor) -> torch.Tensor:
    """[B,Q,T,H,W] -> each (b, q) map divided by its own maximum, so every question uses the full [0,1] range."""
    peak = maps.flatten(2).amax(dim=2)[..., None, None, None]
    return torch.where(peak > 0, maps / peak.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def saliency_maps(
    score_fn: ScoreFn,
    frames: torch.Tensor,
    *,
    samples: int = 1,
    noise_std: float = 0.05,
    kernel: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-question heat maps [B,Q,T,H,W] in [0,1]: gradient magnitude, optionally smoothed, normalised per question."""
    magnitude = reward_gradient_magnitude(score_fn, frames, samples=samples, noise_std=noise_std, generator=generator)
    return normalise_per_question(smooth(magnitude, kernel))
