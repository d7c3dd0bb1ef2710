"""Sampling-chain costs, measured side by side in one run.

(a) Time of our chain with gradients off vs ``WanPipeline`` on the same latents (interleaved repeats, median).
(b) Peak memory of one forward + backward through the last K steps, K = 1, 2, 4, 8, with and without per-step
    checkpointing, on a model whose activations dominate (``wan-small``: 4 layers, 64x64, 17 frames, CFG). Each
    configuration runs in a fresh process; on CUDA the figure is ``max_memory_allocated``, on CPU the process's peak
    resident set (VmHWM, reset just before the step) minus its resident set before the step, with glibc told to
    return freed blocks to the system at once (otherwise fragmentation, not activations, sets the CPU figure).
Prints one line per figure and ends with the headline ratios; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

SIZE = dict(height=128, width=128, num_frames=17, max_sequence_length=32)
NUM_STEPS = 8
NUM_LAYERS = 8
GUIDANCE = 4.0


def _generator(device: str):
    from drf.models.tiny import build_tiny_wan_components
    from drf.models.wan import WanGenerator

    gen = WanGenerator.from_components(
        build_tiny_wan_components("wan-small", num_layers=NUM_LAYERS), scheduler="euler", shift=5.0, **SIZE
    )
    gen.pipe.to(device)
    gen.pipe.set_progress_bar_config(disable=True)
    return gen


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(k: int, checkpointing: bool, device: str) -> float:
    """Peak extra memory (MB) of one K-step-window rollout + backward; run in a fresh process."""
    from drf.grad_window import GradWindow
    from drf.sampling import sample

    gen = _generator(device)
    gen.pipe.transformer.requires_grad_(True)
    cond = gen.encode_prompts(["a small red cube left of a blue sphere"], GUIDANCE)
    latents = gen.init_latents(1, torch.Generator(device).manual_seed(0))
    window = GradWindow.last_k(k, NUM_STEPS, checkpointing=checkpointing)
    with torch.no_grad():  # warm-up: allocator pools, lazily built buffers
        sample(gen, cond, GradWindow.none(NUM_STEPS), latents=latents)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        base = _rss_mb("VmRSS")
    rollout = sample(gen, cond, window, latents=latents)
    rollout.latents.square().mean().backward()
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20 - base
    return _rss_mb("VmHWM") - base


def measure_time(device: str, repeats: int) -> tuple[float, float]:
    from drf.grad_window import GradWindow
    from drf.sampling import sample

    gen = _generator(device)
    prompts = ["a small red cube left of a blue sphere"]
    latents = gen.init_latents(1, torch.Generator(device).manual_seed(0))
    size = {k: SIZE[k] for k in ("height", "width", "num_frames")}

    def ours() -> None:
        with torch.no_grad():
            cond = gen.encode_prompts(prompts, GUIDANCE)
            sample(gen, cond, GradWindow.none(NUM_STEPS), latents=latents.clone())

    def theirs() -> None:
        gen.pipe(
            prompts,
            latents=latents.clone(),
            num_inference_steps=NUM_STEPS,
            guidance_scale=GUIDANCE,
            output_type="latent",
            max_sequence_length=SIZE["max_sequence_length"],
            **size,
        )

    times: dict[str, list[float]] = {"ours": [], "pipeline": []}
    ours(), theirs()  # warm-up
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("pipeline", theirs)):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["ours"]), statistics.median(times["pipeline"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--_memory", nargs=2, metavar=("K", "CKPT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args._memory:
        print(json.dumps(measure_memory(int(args._memory[0]), args._memory[1] == "1", args.device)))
        return

    t_ours, t_pipe = measure_time(args.device, args.repeats)
    size = f"{SIZE['height']}x{SIZE['width']}x{SIZE['num_frames']}"
    print(
        f"device {args.device}; wan-small ({NUM_LAYERS} layers, 4x32 heads) {size}, {NUM_STEPS} steps, CFG {GUIDANCE}"
    )
    print(f"chain (grad off)   {t_ours:.3f} s")
    print(f"WanPipeline        {t_pipe:.3f} s")
    peaks: dict[tuple[int, bool], float] = {}
    for ckpt in (True, False):
        for k in (int(x) for x in args.ks.split(",")):
            cmd = [sys.executable, __file__, "--device", args.device, "--_memory", str(k), str(int(ckpt))]
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
            run = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            out = run.stdout.strip().splitlines()[-1]
            peaks[(k, ckpt)] = float(out)
            label = "checkpointed" if ckpt else "plain"
            print(f"peak memory K={k} {label:<12} {peaks[(k, ckpt)]:8.1f} MB")
    ks = sorted({k for k, _ in peaks})
    for ckpt in (True, False):
        label = "checkpointed" if ckpt else "plain"
        ratios = ", ".join(f"K={k}: {peaks[(k, ckpt)] / peaks[(ks[0], ckpt)]:.2f}" for k in ks)
        print(f"peak(K)/peak(K={ks[0]}) {label}: {ratios}")
    print(
        f"headline: chain/pipeline time {t_ours / t_pipe:.3f}; "
        f"checkpointed peak(K={ks[-1]})/peak(K={ks[0]}) {peaks[(ks[-1], True)] / peaks[(ks[0], True)]:.2f}"
    )


if __name__ == "__main__":
    main()
