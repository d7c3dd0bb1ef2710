"""read_video/write_video: round trips for mp4, gif and frame folders; clear errors for unreadable inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from drf.errors import InputError
from drf.video_io import read_video, write_video


def _frames(t: int = 4, h: int = 32, w: int = 48) -> torch.Tensor:
    # Smooth gradients so lossy codecs reproduce them closely.
    y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    x = torch.linspace(0, 1, w)[None, :].expand(h, w)
    frames = torch.stack([torch.stack([x, y, torch.full_like(x, i / t)]) for i in range(t)])
    return frames


def test_gif_round_trip_keeps_shape_and_values(tmp_path):
    frames = _frames()
    path = write_video(tmp_path / "clip.gif", frames, fps=4)
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == torch.float32
    # GIF palettes quantise colours; a smooth ramp stays within a few uint8 levels.
    assert (back - frames).abs().mean() < 0.03


def test_mp4_round_trip_keeps_shape_and_values(tmp_path):
    frames = _frames()
    path = write_video(tmp_path / "clip.mp4", frames, fps=8)
    back = read_video(path)
    assert back.shape == frames.shape
    # H.264 is lossy (and chroma subsampled); smooth content stays close on average.
    assert (back - frames).abs().mean() < 0.03


def test_folder_of_frames_reads_in_sorted_order(tmp_path):
    for i in (2, 0, 1):
        Image.fromarray(np.full((8, 8, 3), i * 100, np.uint8)).save(tmp_path / f"f{i:03d}.png")
    frames = read_video(tmp_path)
    assert frames.shape == (3, 3, 8, 8)
    assert torch.allclose(frames[:, 0, 0, 0], torch.tensor([0.0, 100.0, 200.0]) / 255)


def test_missing_path_names_the_path(tmp_path):
    with pytest.raises(InputError, match="nothere.mp4"):
        read_video(tmp_path / "nothere.mp4")


def test_corrupt_mp4_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(InputError, match="bad.mp4"):
        read_video(bad)


def test_empty_folder_and_unknown_suffix_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no .png"):
        read_video(tmp_path)
    odd = tmp_path / "clip.xyz"
    odd.write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported"):
        read_video(odd)


def test_write_rejects_bad_shape_and_suffix(tmp_path):
    with pytest.raises(InputError, match=r"\[T,3,H,W\]"):
        write_video(tmp_path / "a.gif", torch.zeros(2, 8, 8))
    with pytest.raises(InputError, match="supports"):
        write_video(tmp_path / "a.avi", torch.zeros(2, 3, 8, 8))


def test_truncated_faststart_mp4_is_an_error_not_a_shorter_video(tmp_path):
    """With the index at the front, a cut file still opens and decodes its first frames only."""
    import imageio.v2 as imageio

    path = tmp_path / "clip.mp4"
    writer = imageio.get_writer(str(path), format="FFMPEG", fps=8, output_params=["-movflags", "+faststart"],
                                macro_block_size=1)  # fmt: skip
    rng = np.random.default_rng(0)  # noise: the frame data, not the index at the front, is most of the file
    for _ in range(33):
        writer.append_data(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    writer.close()
    assert read_video(path).shape[0] == 33
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"clip\.mp4: decoded \d+ of the 33 frames its header announces"):
        read_video(path)
