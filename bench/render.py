"""Toy-world ray-caster throughput: frames per second at 64x64x17 and 32x32x9, one thread, plain and 2x2 supersampled."""

import time

import torch

from drf.toyworld.render import render
from drf.toyworld.scene import sample_scenes


def frames_per_second(num_frames: int, size: int, supersample: int, videos: int = 20) -> float:
    scenes = sample_scenes(videos, seed=123)
    render(scenes[0], num_frames, size, size, supersample)  # warm-up
    start = time.perf_counter()
    for scene in scenes:
        render(scene, num_frames, size, size, supersample)
    return videos * num_frames / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(1)
    for num_frames, size in ((17, 64), (9, 32)):
        for ss in (1, 2):
            fps = frames_per_second(num_frames, size, ss)
            print(f"render {size}x{size}x{num_frames} supersample={ss}: {fps:.0f} frames/s "
                  f"({num_frames / fps * 1000:.1f} ms per video)")
    start = time.perf_counter()
    sample_scenes(100, seed=7)
    print(f"scene sampling: {(time.perf_counter() - start) * 10:.1f} ms per scene")


if __name__ == "__main__":
    main()
