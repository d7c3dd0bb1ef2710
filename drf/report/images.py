"""Frames as inline images: PNG strips and animated GIFs encoded as data URIs, and heat-map overlays.

A report must open anywhere as a single file, so every picture travels inside the HTML as a ``data:`` URI.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch

SEPARATOR = 2  # white pixels between frames of a strip


def _uint8(frames: torch.Tensor) -> np.ndarray:
    """[...,3,H,W] float in [0,1] -> [...,H,W,3] uint8."""
    array = frames.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return np.moveaxis(array, -3, -1)


def pick_frames(num_frames: int, count: int) -> list[int]:
    """Up to ``count`` evenly spaced frame indices including the first and the last."""
    if num_frames <= count:
        return list(range(num_frames))
    if count <= 1:
        return [num_frames // 2]
    return sorted({round(i * (num_frames - 1) / (count - 1)) for i in range(count)})


def strip(frames: torch.Tensor, indices: list[int]) -> torch.Tensor:
    """The chosen frames of [T,3,H,W] side by side with white separators -> [3,H,W']."""
    chosen = [frames[i] for i in indices]
    gap = torch.ones(3, frames.shape[-2], SEPARATOR, dtype=frames.dtype, device=frames.device)
    pieces = []
    for i, frame in enumerate(chosen):
        if i:
            pieces.append(gap)
        pieces.append(frame)
    return torch.cat(pieces, dim=-1)


def png_data_uri(image: torch.Tensor) -> str:
    """image [3,H,W] in [0,1] -> ``data:image/png;base64,...``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_uint8(image)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def gif_data_uri(frames: torch.Tensor, fps: float = 8.0) -> str:
    """frames [T,3,H,W] in [0,1] -> a looping animated GIF as ``data:image/gif;base64,...``."""
    from PIL import Image

    images = [Image.fromarray(a) for a in _uint8(frames)]
    buffer = io.BytesIO()
    duration = max(20, round(1000 / fps))
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return "data:image/gif;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def overlay(frames: torch.Tensor, heat: torch.Tensor, strength: float = 0.8) -> torch.Tensor:
    """Blend a red heat map onto frames: frames [T,3,H,W] in [0,1], heat [T,H,W] in [0,1] -> [T,3,H,W] in [0,1].

    The frame is faded towards grey first, so red marks stand out even on red objects.
    """
    alpha = (strength * heat).clamp(0, 1)[:, None]
    grey = frames.mean(dim=1, keepdim=True)
    faded = 0.45 * frames + 0.35 * grey + 0.1
    red = torch.tensor([1.0, 0.0, 0.0], dtype=frames.dtype, device=frames.device)[None, :, None, None]
    return (faded * (1 - alpha) + red * alpha).clamp(0, 1)


def display_scale(height: int, target: int = 96) -> int:
    """Integer zoom so small frames show at about ``target`` pixels high (crisp with image-rendering: pixelated)."""
    return max(1, round(target / max(1, height)))
