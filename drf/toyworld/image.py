"""Pixel filters shared by the toy world's judge and the degradations its critic trains on."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``x`` [..., H, W] over its last two dims (radius ceil(2 sigma), edges replicated)."""
    radius = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    flat = x.reshape(-1, 1, *x.shape[-2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return flat.reshape(x.shape)
