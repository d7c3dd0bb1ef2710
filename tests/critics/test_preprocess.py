"""Our differentiable preprocessing vs the official processors fed the same uint8 images."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from critics import preprocess
from critics.preprocess import (
    OPENAI_CLIP_STD,
    clip_preprocess,
    qwen_patchify,
    qwen_preprocess,
    qwen_target_size,
    resize_bicubic,
)

# Pillow rounds to uint8 after each of its two resize passes and uses fixed-point weights; we stay in float. Measured
# over 120 random sizes (30-200 px a side, photo-like and noise frames, Qwen and CLIP processors): worst 1.10 uint8
# levels, mean 0.26 (photo-like) and 0.31 (noise), which is rounding noise: at most 1.15 levels anywhere, 0.4 on average.
MAX_LEVELS = 1.15


def _levels(ours: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Normalised [N, 3*rest] differences -> uint8 levels (undo the per-channel std)."""
    std = torch.tensor(OPENAI_CLIP_STD)[None, :, None]
    return (ours - ref).reshape(ours.shape[0], 3, -1).abs() * std * 255


def _smooth_uint8(t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Photo-like frames: a low-resolution random field upsampled, plus a hard edge."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(t, 3, max(2, h // 8), max(2, w // 8), generator=g)
    x = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    x[..., : h // 3, : w // 2] = 0.9
    return (x * 255).round().to(torch.uint8)


def _pil(frames_u8: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in frames_u8]


def _qwen_official(frames_u8, min_pixels, max_pixels):
    proc = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    out = proc(_pil(frames_u8), return_tensors="pt")
    return out["pixel_values"], out["image_grid_thw"].tolist()


def test_qwen_images_match_processor_exactly_without_resize():
    u8 = torch.randint(0, 256, (3, 3, 56, 84), dtype=torch.uint8)  # sides are multiples of 28: no resize
    ref, ref_grid = _qwen_official(u8, 56 * 56, 112 * 112)
    ours, grids = qwen_preprocess(u8.float() / 255, 14, 2, 2, 56 * 56, 112 * 112, as_images=True)
    assert [list(g) for g in grids] == ref_grid
    assert (ours - ref).abs().max() <= 1e-6


@pytest.mark.parametrize("size", [(50, 70), (100, 140), (90, 60)])
def test_qwen_images_within_one_uint8_level_when_resizing(size):
    u8 = _smooth_uint8(2, *size)
    ref, ref_grid = _qwen_official(u8, 56 * 56, 112 * 112)
    ours, grids = qwen_preprocess(u8.float() / 255, 14, 2, 2, 56 * 56, 112 * 112, as_images=True)
    assert [list(g) for g in grids] == ref_grid
    levels = _levels(ours, ref)
    assert levels.max() <= MAX_LEVELS and levels.mean() < 0.4


# Frames [height, width] -> Qwen's target between 56*56 and 224*224 pixels, one for each way the two sides can move;
# Pillow 13 resizes the last one height first (its height loses more than twice the width's pixels).
DIRECTIONS = {
    "height down, width up": (150, 100),  # -> (140, 112)
    "height up, width down": (100, 150),  # -> (112, 140)
    "both up": (45, 75),  # -> (56, 84)
    "both down, width first": (95, 125),  # -> (84, 112)
    "both down, height first": (97, 114),  # -> (84, 112)
}


@pytest.mark.parametrize("size", DIRECTIONS.values(), ids=DIRECTIONS.keys())
def test_resize_runs_its_passes_in_pillows_order(size):
    # Noise: the kernel overshoots on every pixel, so clamping the intermediate after the wrong pass shows (~20 levels).
    u8 = torch.randint(0, 256, (2, 3, *size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    target = qwen_target_size(*size, 28, 56 * 56, 224 * 224)
    ours = resize_bicubic(u8.float() / 255, target) * 255
    pillow = torch.stack([torch.from_numpy(np.array(im.resize(target[::-1], Image.BICUBIC))) for im in _pil(u8)])
    assert (ours - pillow.permute(0, 3, 1, 2)).abs().max() <= MAX_LEVELS
    ref, _ = _qwen_official(u8, 56 * 56, 224 * 224)
    ours, _ = qwen_preprocess(u8.float() / 255, 14, 2, 2, 56 * 56, 224 * 224, as_images=True)
    assert _levels(ours, ref).max() <= MAX_LEVELS


def test_resize_before_pillow_13_runs_width_first(monkeypatch):
    # Earlier Pillow always resizes width, then height: two one-axis resizes of Pillow 13 are exactly those passes.
    monkeypatch.setattr(preprocess, "PILLOW_MAY_RESIZE_HEIGHT_FIRST", False)
    u8 = torch.randint(0, 256, (1, 3, 97, 114), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    ours = resize_bicubic(u8.float() / 255, (84, 112)) * 255
    im = _pil(u8)[0].resize((112, 97), Image.BICUBIC).resize((112, 84), Image.BICUBIC)
    assert (ours[0] - torch.from_numpy(np.array(im)).permute(2, 0, 1)).abs().max() <= MAX_LEVELS


def test_qwen_target_size_matches_smart_resize():
    for h, w in [(50, 70), (480, 832), (28, 28), (17, 300), (1000, 1000)]:
        assert qwen_target_size(h, w, 28, 56 * 56, 224 * 224) == image_processing_pil_qwen2_vl.smart_resize(
            h, w, 28, 56 * 56, 224 * 224
        )


def _official_video_patchify():
    """Qwen2VLVideoProcessor.patchify, compiled from transformers' source (the class itself needs torchvision)."""
    import transformers.models.qwen2_vl as pkg

    path = inspect.getfile(pkg).replace("__init__.py", "video_processing_qwen2_vl.py")
    tree = ast.parse(open(path).read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Qwen2VLVideoProcessor")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "patchify")
    fn.returns = None
    for arg in fn.args.args:
        arg.annotation = None
    namespace = {"torch": torch}
    exec(compile(ast.Module([fn], []), path, "exec"), namespace)
    return namespace["patchify"]


@pytest.mark.parametrize("num_frames", [4, 5])
def test_qwen_video_patches_match_video_processor_layout(num_frames):
    frames = torch.randn(num_frames, 3, 56, 84)
    ref, *ref_grid = _official_video_patchify()(None, frames[None], 14, 2, 2)
    ours, grid = qwen_patchify(frames, 14, 2, 2)
    assert tuple(ref_grid) == grid
    assert torch.equal(ours, ref[0])


def test_qwen_video_of_a_still_frame_equals_the_image_patches():
    u8 = torch.randint(0, 256, (1, 3, 56, 56), dtype=torch.uint8)
    ref, _ = _qwen_official(u8, 56 * 56, 112 * 112)
    ours, _ = qwen_preprocess((u8.float() / 255).expand(2, -1, -1, -1), 14, 2, 2, 56 * 56, 112 * 112)
    assert (ours - ref).abs().max() <= 1e-6


def _clip_official(u8, shortest, crop):
    proc = CLIPImageProcessorPil(size={"shortest_edge": shortest}, crop_size={"height": crop, "width": crop})
    return proc(_pil(u8), return_tensors="pt")["pixel_values"]


def test_clip_matches_processor_exactly_without_resize():
    u8 = torch.randint(0, 256, (3, 3, 28, 42), dtype=torch.uint8)  # shortest edge already 28: crop only
    ref = _clip_official(u8, 28, 28)
    assert (clip_preprocess(u8.float() / 255, 28, (28, 28)) - ref).abs().max() <= 1e-6


@pytest.mark.parametrize("size", [(64, 48), (100, 150)])
def test_clip_within_one_uint8_level_when_resizing(size):
    u8 = _smooth_uint8(2, *size)
    ref = _clip_official(u8, 28, 28)
    levels = _levels(clip_preprocess(u8.float() / 255, 28, (28, 28)), ref)
    assert levels.max() <= MAX_LEVELS and levels.mean() < 0.4


def test_preprocessing_passes_gradients_to_pixels():
    frames = torch.rand(4, 3, 50, 70, requires_grad=True)
    patches, _ = qwen_preprocess(frames, 14, 2, 2, 56 * 56, 112 * 112)
    patches.square().sum().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    assert np.isfinite(frames.grad.numpy()).all()
