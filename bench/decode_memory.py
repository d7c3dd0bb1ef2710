"""Peak memory of a VAE decode plus its backward at 9, 33 and 81 frames: diffusers' decode against drf's checkpointed
decode, on the family's real VAE architecture (random weights, nothing downloaded) at a small frame size, where
activations dominate the weights. Wan 2.1 (``--family wan``): per latent frame ("frames", ``drf.models.wan_decode``)
and in segments of ~sqrt(N) latent frames ("segments"). LTX-Video 0.9 (``--family ltx``): the decoder's own block
checkpointing ("frames", what ``model.decode_checkpointing: frames`` turns on for LTX).

Each measurement runs in its own process: on a GPU the peak of ``torch.cuda.max_memory_allocated`` above what was
allocated before the decode; on a CPU the peak resident set above the one before the decode, with glibc told to
map every allocation over 128 KB on its own (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave the resident
set instead of a fragmented heap. Prints one line per setting and ends with the headline ratio, checkpointed (segments)
peak(33) / peak(9).

    python bench/decode_memory.py [--family wan|ltx] [--size 64] [--frames 9 33 81]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


MODES = {"wan": ("plain", "frames", "segments"), "ltx": ("plain", "frames")}


def _decoder(family: str, mode: str, frames: int, size: int, device: str):
    """(decode function of the VAE's latent, a random latent with grad) for the family's real VAE architecture."""
    import torch

    torch.manual_seed(0)
    if family == "ltx":
        from diffusers import AutoencoderKLLTXVideo

        vae = AutoencoderKLLTXVideo().to(device).eval().requires_grad_(False)  # LTX-Video 0.9.0's VAE
        if mode == "frames":
            vae.enable_gradient_checkpointing()
        z = torch.randn(1, 128, 1 + (frames - 1) // 8, size // 32, size // 32, device=device, requires_grad=True)
        return (lambda latent: vae.decode(latent).sample), z
    from diffusers import AutoencoderKLWan

    from drf.models.wan_decode import checkpointed_decode

    vae = AutoencoderKLWan().to(device).eval().requires_grad_(False)  # the Wan 2.1 VAE's architecture
    z = torch.randn(1, 16, 1 + (frames - 1) // 4, size // 8, size // 8, device=device, requires_grad=True)
    if mode == "plain":
        return (lambda latent: vae.decode(latent).sample), z
    return (lambda latent: checkpointed_decode(vae, latent, segments=mode == "segments")), z


def measure(frames: int, size: int, mode: str, family: str = "wan") -> dict:
    """Decode + backward once in this process -> {peak_mb, seconds}."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    decode, z = _decoder(family, mode, frames, size, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = resident_mb()
    started = time.perf_counter()
    out = decode(z)
    out.square().mean().backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mb": peak - before, "seconds": time.perf_counter() - started, "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(MODES), default="wan", help="whose VAE (ltx: frames 8n+1)")
    parser.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    parser.add_argument("--frames", type=int, nargs="+", default=[9, 33, 81])
    parser.add_argument("--child", nargs=2, metavar=("FRAMES", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(int(args.child[0]), args.size, args.child[1], args.family)))
        return
    modes = MODES[args.family]
    peaks: dict[tuple[str, int], float] = {}
    for mode in modes:
        for frames in args.frames:
            run = subprocess.run(
                [sys.executable, __file__, "--family", args.family, "--size", str(args.size), "--child", str(frames),
                 mode],
                capture_output=True, text=True, cwd=ROOT, check=True,
                env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},
            )  # fmt: skip
            result = json.loads(run.stdout.strip().splitlines()[-1])
            peaks[mode, frames] = result["peak_mb"]
            print(f"{mode:>8} decode+backward, {frames:>3} frames at {args.size}x{args.size} on {result['device']}: "
                  f"peak {result['peak_mb']:8.0f} MB, {result['seconds']:6.1f} s")  # fmt: skip
    first = args.frames[0]
    for mode in modes:
        ratios = ", ".join(f"peak({f})/peak({first}) {peaks[mode, f] / peaks[mode, first]:.2f}" for f in args.frames[1:])
        print(f"{mode:>8}: {ratios}")
    for frames in args.frames:
        print(f"at {frames} frames: " + ", ".join(
            f"{mode} / plain {peaks[mode, frames] / peaks['plain', frames]:.3f}" for mode in modes[1:]
        ))  # fmt: skip
    if 33 in args.frames and 9 in args.frames:
        best = modes[-1]
        print(f"headline: checkpointed ({best}) peak(33)/peak(9) = {peaks[best, 33] / peaks[best, 9]:.2f}")


if __name__ == "__main__":
    main()
