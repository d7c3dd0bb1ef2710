"""Scoring under random augmentations: the critic's reward as the mean over a few random views of each video.

A small critic's gradient can be carried by one pixel pattern (speckle that raises its answer without changing what
is drawn). Averaging its reward over random crops (re-resized to the frame size), Gaussian blurs and additive noise
means no single pattern survives every view, so the gradient that remains is the one that changes what the views
share: the picture. Every view is differentiable in the frames and drawn from a seeded stream per video, so training
is reproducible and a resumed run draws the same views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from drf.errors import invalid


@dataclass
class AugmentConfig:
    """``critic.augment``: how many random views of each video the critic's reward averages over, and their knobs."""

    n: int = field(
        default=0,
        metadata={"help": "Random views per video whose critic rewards are averaged; 0 = off (the frames as decoded). "
                  "Each view is one more critic forward and backward."},
    )  # fmt: skip
    crop_min: float = field(
        default=0.8,
        metadata={"help": "Each view crops a random window whose sides are a fraction in [crop_min, 1] of the frame's "
                  "(the same window for every frame of the video) and resizes it back; 1 = no crop."},
    )  # fmt: skip
    blur_sigma: float = field(
        default=1.0,
        metadata={"help": "Gaussian blur with a standard deviation drawn in [0, blur_sigma] pixels per view; 0 = none."},
    )
    noise_std: float = field(
        default=0.03,
        metadata={"help": "Standard deviation of Gaussian noise added to the [0, 1] pixels (not clipped, so gradients "
                  "reach every pixel); 0 = none."},
    )  # fmt: skip
    seed: int = field(default=0, metadata={"help": "Seed of the views, mixed with each video's own noise seed."})

    def validate(self) -> None:
        if self.n < 0:
            raise invalid("n", f"must be >= 0 (got {self.n}); 0 turns augmentation off")
        if not 0 < self.crop_min <= 1:
            raise invalid("crop_min", f"must be in (0, 1] (got {self.crop_min})")
        for key in ("blur_sigma", "noise_std"):
            if getattr(self, key) < 0:
                raise invalid(key, f"must be >= 0 (got {getattr(self, key)})")


def view_generator(cfg: AugmentConfig, video_seed: int) -> torch.Generator:
    """The stream one video's views are drawn from: ``cfg.seed`` mixed with the video's own seed."""
    return torch.Generator().manual_seed((cfg.seed * 1_000_003 + video_seed) % (1 << 63))


def random_view(frames: torch.Tensor, cfg: AugmentConfig, rng: torch.Generator) -> torch.Tensor:
    """One random view of one video: frames [T,3,H,W] in [0,1] -> [T,3,H,W], differentiable in ``frames``."""
    height, width = frames.shape[-2:]
    scale = cfg.crop_min + (1 - cfg.crop_min) * float(torch.rand((), generator=rng))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    top = int(torch.randint(height - h + 1, (), generator=rng))
    left = int(torch.randint(width - w + 1, (), generator=rng))
    view = frames[..., top : top + h, left : left + w]
    if (h, w) != (height, width):
        view = F.interpolate(view, size=(height, width), mode="bilinear", align_corners=False)
    sigma = cfg.blur_sigma * float(torch.rand((), generator=rng))
    view = gaussian_blur(view, sigma)
    if cfg.noise_std > 0:
        noise = torch.randn(view.shape, generator=rng, dtype=view.dtype).to(view.device)
        view = view + cfg.noise_std * noise
    return view


def gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """frames [N,C,H,W] blurred by a separable Gaussian of standard deviation ``sigma`` pixels (reflected edges);
    unchanged below 0.05 pixels, where the kernel is a single tap."""
    if sigma < 0.05:
        return frames
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, frames.shape[-2] - 1, frames.shape[-1] - 1)  # reflect padding needs radius < side
    offsets = torch.arange(-radius, radius + 1, dtype=frames.dtype, device=frames.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = frames.shape[1]
    out = F.pad(frames, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def augmented_views(frames: torch.Tensor, cfg: AugmentConfig, seeds: list[int]) -> list[torch.Tensor]:
    """``cfg.n`` batches of views of frames [B,T,3,H,W], video b's views drawn from ``seeds[b]``'s stream."""
    streams = [view_generator(cfg, seed) for seed in seeds]
    return [
        torch.stack([random_view(video, cfg, rng) for video, rng in zip(frames, streams)]) for _ in range(cfg.n)
    ]
