"""Toy-world throughput, one thread: ray-caster frames per second at 64x64x17 and 32x32x9 (plain and 2x2 supersampled),
scene sampling, and the oracle's time per video."""

import time

import torch

from drf.toyworld.oracle import analyze
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
            print(
                f"render {size}x{size}x{num_frames} supersample={ss}: {fps:.0f} frames/s "
                f"({num_frames / fps * 1000:.1f} ms per video)"
            )
    start = time.perf_counter()
    scenes = sample_scenes(50, seed=7)
    print(f"scene sampling: {(time.perf_counter() - start) * 20:.1f} ms per scene")
    videos = [render(s, supersample=2).rgb for s in scenes[:20]]
    start = time.perf_counter()
    for video in videos:
        analyze(video)
    print(f"oracle analyze 64x64x17: {(time.perf_counter() - start) / len(videos) * 1000:.0f} ms per video")


if __name__ == "__main__":
    main()
