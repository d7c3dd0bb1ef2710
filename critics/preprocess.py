"""Differentiable copies of the VLM image processors, so reward gradients reach the pixels.

The official processors convert to uint8 PIL images and numpy arrays, which cuts the graph. These functions take float
frames in [0,1] and reproduce the same resize (Pillow's antialiased bicubic, a = -0.5, which is what
``F.interpolate(mode="bicubic", antialias=True)`` computes, in Pillow's order of passes), rescale, normalisation and
patch layout in torch. Without resizing they match the processors exactly; with resizing the processors round to
uint8 after each pass, so they differ by rounding: measured over 120 random sizes (photo-like and noise frames, both
processors), at most 1.10 uint8 levels, 0.26-0.31 on average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib.metadata import version

import torch
import torch.nn.functional as F

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# Pillow 13 runs the vertical pass first when the height shrinks, by more than twice as many pixels as the width
# (python-pillow/Pillow#9549: "if height is scaled down significantly more than width, resize vertically first");
# earlier versions always start with the horizontal pass.
PILLOW_MAY_RESIZE_HEIGHT_FIRST = int(version("pillow").split(".")[0]) >= 13


def height_first(height: int, width: int, size: tuple[int, int]) -> bool:
    """Whether Pillow resizes [height, width] images to ``size`` with the vertical pass first."""
    return PILLOW_MAY_RESIZE_HEIGHT_FIRST and size[0] < height and height - size[0] > 2 * (width - size[1])


def resize_bicubic(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """frames [N,3,H,W] in [0,1] -> [N,3,h,w] with Pillow's bicubic kernel; identity when the size already matches.

    Pillow resizes one axis, stores the intermediate image as uint8 (clipping the kernel's overshoot), then the other;
    the passes run in Pillow's order (``height_first``) and are clamped in between. Either difference alone moves
    sharp content by 10-20 uint8 levels.
    """
    height, width = frames.shape[-2:]
    passes = [(height, size[1]), tuple(size)]
    if height_first(height, width, size):
        passes = [(size[0], width), tuple(size)]
    for target in passes:
        if tuple(frames.shape[-2:]) != target:
            frames = F.interpolate(frames, size=target, mode="bicubic", antialias=True, align_corners=False)
            frames = frames.clamp(0, 1)
    return frames


def normalize(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """frames [N,3,H,W] in [0,1] -> (frames - mean) / std per channel."""
    mean_t = torch.as_tensor(mean, dtype=frames.dtype, device=frames.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=frames.dtype, device=frames.device).view(1, -1, 1, 1)
    return (frames - mean_t) / std_t


def qwen_target_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen's ``smart_resize``: sides divisible by ``factor``, area within [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen_patchify(
    frames: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Normalised frames [T,3,H,W] of one video -> (patches [t*h*w, 3*tp*p*p], grid (t, h, w)).

    The layout is Qwen's video processor's: frames are padded to a multiple of ``temporal_patch_size`` by repeating
    the last one, and patches are ordered by merge window so the vision merger sees neighbours together.
    """
    num_frames, channels, height, width = frames.shape
    if pad := -num_frames % temporal_patch_size:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)], dim=0)
        num_frames += pad
    grid_t = num_frames // temporal_patch_size
    grid_h, grid_w = height // patch_size, width // patch_size
    patches = frames.reshape(
        grid_t,
        temporal_patch_size,
        channels,
        grid_h // merge_size,
        merge_size,
        patch_size,
        grid_w // merge_size,
        merge_size,
        patch_size,
    )
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = patches.reshape(grid_t * grid_h * grid_w, channels * temporal_patch_size * patch_size * patch_size)
    return flat, (grid_t, grid_h, grid_w)


def qwen_patchify_images(
    frames: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int
) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """Normalised frames [T,3,H,W] as T separate images -> (patches, one grid (1, h, w) per frame).

    Qwen's image processor fills the temporal patch by repeating the single image, which is a one-frame video.
    """
    chunks, grids = [], []
    for frame in frames:
        patches, grid = qwen_patchify(
            frame[None].expand(temporal_patch_size, -1, -1, -1), patch_size, merge_size, temporal_patch_size
        )
        chunks.append(patches)
        grids.append(grid)
    return torch.cat(chunks, dim=0), grids


def qwen_preprocess(
    frames: torch.Tensor,
    patch_size: int,
    merge_size: int,
    temporal_patch_size: int,
    min_pixels: int,
    max_pixels: int,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
    as_images: bool = False,
) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """frames [T,3,H,W] in [0,1] -> (flat patches, grids): one grid for a video, one per frame for images."""
    height, width = frames.shape[-2:]
    size = qwen_target_size(height, width, patch_size * merge_size, min_pixels, max_pixels)
    x = normalize(resize_bicubic(frames, size), mean, std)
    if as_images:
        return qwen_patchify_images(x, patch_size, merge_size, temporal_patch_size)
    patches, grid = qwen_patchify(x, patch_size, merge_size, temporal_patch_size)
    return patches, [grid]


def clip_resize_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """Size after CLIP's shortest-edge resize (the long side is truncated, as in transformers)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def center_crop(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """frames [N,3,H,W] -> central [N,3,h,w] crop (offsets floored, as in transformers)."""
    height, width = frames.shape[-2:]
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    if top < 0 or left < 0:
        raise ValueError(f"cannot crop {height}x{width} frames to {size[0]}x{size[1]}")
    return frames[..., top : top + size[0], left : left + size[1]]


def clip_preprocess(
    frames: torch.Tensor,
    shortest_edge: int,
    crop_size: tuple[int, int],
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
) -> torch.Tensor:
    """frames [N,3,H,W] in [0,1] -> pixel_values [N,3,h,w] as ``CLIPImageProcessor`` makes them."""
    size = clip_resize_size(frames.shape[-2], frames.shape[-1], shortest_edge)
    return normalize(center_crop(resize_bicubic(frames, size), crop_size), mean, std)
