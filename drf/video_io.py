"""Read and write videos as float frame tensors, so every package speaks ``frames: [T,3,H,W] in [0,1]``.

Supported inputs: ``.mp4`` (and other ffmpeg containers) through imageio-ffmpeg, ``.gif`` through Pillow, and a folder
of PNG/JPG frames read in sorted name order. Anything unreadable raises ``InputError`` naming the path.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from drf.errors import InputError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
FFMPEG_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
VIDEO_SUFFIXES = FFMPEG_SUFFIXES + (".gif",)


def _to_tensor(arrays: list[np.ndarray], path: Path) -> torch.Tensor:
    """[T] uint8 HxWxC arrays -> [T,3,H,W] float32 in [0,1] (grey expanded, alpha dropped)."""
    if not arrays:
        raise InputError(f"{path}: no frames could be read; check that the file is a non-empty video")
    frames = []
    for a in arrays:
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        frames.append(a[:, :, :3])
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise InputError(f"{path}: frames have different sizes {sorted(shapes)}; all frames of a video must match")
    stacked = np.stack(frames).astype(np.float32) / 255.0
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def _read_ffmpeg(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        meta = reader.get_meta_data()
        frames = [np.asarray(frame) for frame in reader]
    finally:
        reader.close()
    duration, fps = meta.get("duration") or 0.0, meta.get("fps") or 0.0
    announced = round(duration * fps) if math.isfinite(duration * fps) else 0
    if len(frames) < announced - 1:  # one frame of rounding in duration x fps
        raise InputError(
            f"{path}: decoded {len(frames)} of the {announced} frames its header announces ({duration:g} s at "
            f"{fps:g} fps); the file is truncated or damaged, re-export it"
        )
    return frames


def _read_gif(path: Path) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    with Image.open(path) as img:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(img)]


def _read_folder(path: Path) -> list[np.ndarray]:
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise InputError(f"{path}: folder holds no {'/'.join(FRAME_SUFFIXES)} frames; put the video's frames there")
    arrays = []
    for f in files:
        with Image.open(f) as img:
            arrays.append(np.asarray(img.convert("RGB")))
    return arrays


def read_video(path: str | Path) -> torch.Tensor:
    """Read ``path`` (mp4/gif/folder of frames) -> frames [T,3,H,W] float32 in [0,1]."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; give an .mp4, a .gif or a folder of PNG/JPG frames")
    suffix = path.suffix.lower()
    try:
        if path.is_dir():
            arrays = _read_folder(path)
        elif suffix == ".gif":
            arrays = _read_gif(path)
        elif suffix in FFMPEG_SUFFIXES:
            arrays = _read_ffmpeg(path)
        else:
            raise InputError(f"{path}: unsupported video type {suffix!r}; use {', '.join(VIDEO_SUFFIXES)} or a folder")
    except InputError:
        raise
    except Exception as err:  # decoder libraries raise many unrelated types for corrupt files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"{path}: cannot read video ({reason}); check the file is a valid {suffix or 'video'}"
        ) from None
    return _to_tensor(arrays, path)


def _to_uint8(frames: torch.Tensor, path: Path) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise InputError(f"{path}: frames must be [T,3,H,W], got {tuple(frames.shape)}")
    array = frames.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).cpu().numpy()


def write_video(path: str | Path, frames: torch.Tensor, fps: float = 8.0) -> Path:
    """Write frames [T,3,H,W] in [0,1] to ``path`` (.mp4 via ffmpeg, .gif via Pillow); returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise InputError(f"{path}: cannot write {suffix!r}; write_video supports .mp4 and .gif")
    array = _to_uint8(frames, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(a) for a in array]
        duration = max(1, round(1000 / fps))
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
    else:
        import imageio.v2 as imageio

        # libx264 with yuv420p needs even sizes; macro_block_size=1 keeps the exact size (ffmpeg pads otherwise).
        writer = imageio.get_writer(
            str(path),
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            quality=8,
            macro_block_size=1,
            pixelformat="yuv444p" if array.shape[1] % 2 or array.shape[2] % 2 else "yuv420p",
        )
        try:
            for a in array:
                writer.append_data(a)
        finally:
            writer.close()
    return path


def video_filename(index: int, prompt: str, video_format: str, limit: int = 40) -> str:
    """``003_a_red_cube.gif``: sorted by prompt index, readable at a glance, safe on every filesystem."""
    words = "_".join(filter(None, "".join(c if c.isalnum() else "_" for c in prompt.lower()).split("_")))
    return f"{index:03d}_{words[:limit] or 'video'}.{video_format}"
