"""The real-scale check for one GPU: a DRF step with 33 and 81 frames, K = 1, LoRA r=32, bf16, with random weights
at Wan2.1-T2V-1.3B (480x832) or LTX-Video 2B (``--family ltx``, 480x704) size and a Qwen2.5-VL-3B-sized critic
(``bench/train_step.py``'s large models; nothing is downloaded). Every frame is decoded with gradient (Wan: the
per-latent-frame checkpointed decode; LTX: the decoder's block checkpointing) and scored.

Prints, per clip length: peak memory and seconds of each phase of the step (sampling, decode, rewards, backward),
for Wan the same step's peak as ``drf plan`` plans it above what the step finds allocated (as measured: the
allocator's peak less what was allocated before the step), then the transformer's achieved TFLOP/s in a backward pass (a forward + backward of one guided denoiser call at the
clip's latent size, FLOPs counted by ``torch.utils.flop_counter``, base weights frozen as in LoRA training) against
the chip's dense bf16 ceiling. Ends with the headline: peak(81) / peak(33). About 5 minutes on one H200.

    python bench/gpu_check.py [--family wan|ltx] [--frames 33 81] [--steps 1] [--peak-tflops 989]
    python bench/gpu_check.py --smoke      # the same code on CPU at a tiny size, to check the script runs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_step import PHASES, large_models, measure, run_config, small_models  # noqa: E402


def transformer_backward_tflops(gen, device: torch.device, repeats: int = 3) -> tuple[float, float]:
    """(TFLOP per forward+backward of one guided denoiser call, achieved TFLOP/s) at the generator's latent size."""
    from torch.utils.flop_counter import FlopCounterMode

    latents = gen.init_latents(1, torch.Generator().manual_seed(0)).to(device).requires_grad_(True)
    cond = gen.encode_prompts(["a red cube on a checkered floor"], 5.0)
    timestep = torch.tensor(900.0, device=device)

    def once() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            v = gen.velocity(latents, timestep, cond)
        v.float().square().mean().backward()

    counter = FlopCounterMode(display=False)
    with counter:
        once()
    flops = counter.get_total_flops()
    once()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / repeats
    return flops / 1e12, flops / seconds / 1e12


def planned_above_held_mb(model: dict, large: bool) -> float:
    """``drf plan``'s peak of the measured micro-step above what is held before it (weights, LoRA, optimiser state),
    with the shipped configs of the models ``large_models`` builds at random (Wan2.1 1.3B, Qwen2.5-VL 3B)."""
    import dataclasses
    import tempfile

    from drf.plan.step import plan_step
    from drf.plan.tracker import OPTIMIZER

    with tempfile.TemporaryDirectory() as tmp:
        cfg = run_config(Path(tmp), model, 1, large, True, "all")
        if large:
            model_cfg = dataclasses.replace(cfg.model, path="Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
            critic = dataclasses.replace(cfg.critic, tiny=False, path="Qwen/Qwen2.5-VL-3B-Instruct", dtype="bfloat16")
            cfg = dataclasses.replace(cfg, model=model_cfg, critic=critic)
        cfg = dataclasses.replace(cfg, drf=dataclasses.replace(cfg.drf, gradient_accumulation=1))
        plan = plan_step(cfg)
    held = sum(plan.static.values())
    return max(p.bytes - held - p.by_kind.get(OPTIMIZER, 0) for p in plan.phases.values()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=("wan", "ltx"), default="wan", help="generator family to size")
    parser.add_argument("--frames", type=int, nargs="+", default=[33, 81], help="clip lengths (wan 4n+1, ltx 8n+1)")
    parser.add_argument("--steps", type=int, default=1, help="timed micro-steps per clip length (after a warm-up)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the chip's dense bf16 TFLOP/s (H100/H200)")
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU: checks the script, not the chip")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        print("needs a CUDA GPU (random real-size generator + 3B critic); --smoke runs the same code on CPU, tiny")
        return
    peaks = {}
    for frames in args.frames:
        if args.smoke:
            gen, critic, model = small_models(device, args.family)
        else:
            gen, critic, model = large_models(device, num_frames=frames, family=args.family)
        print(f"# {args.family}: {frames if not args.smoke else model['num_frames']} frames at {model['height']}x"
              f"{model['width']} on {device}, K=1, LoRA, every frame decoded with gradient")  # fmt: skip
        held = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
        meter = measure(gen, critic, model, 1, args.steps, not args.smoke, device, True, "all")
        for phase in PHASES:
            print(f"{frames} frames {phase:9s} time_s={meter.seconds[phase]:.3f} peak_mb={meter.peak_mb[phase]:.0f}")
        peaks[frames] = max(meter.peak_mb.values())
        total = sum(meter.seconds[p] for p in PHASES)
        print(f"{frames} frames total     time_s={total:.3f} peak_mb={peaks[frames]:.0f}")
        if args.family == "wan":
            planned = planned_above_held_mb(model, not args.smoke)
            above = peaks[frames] - held
            measured = (
                f"measured {above:.0f} MB, planned/measured {planned / above:.3f}" if held else "measured on a GPU"
            )
            print(f"{frames} frames drf plan: {planned:.0f} MB above the weights; {measured}")
        tflop, rate = transformer_backward_tflops(gen, device)
        print(f"{frames} frames transformer forward+backward: {tflop:.3g} TFLOP, {rate:.3g} TFLOP/s = "
              f"{rate / args.peak_tflops:.1%} of {args.peak_tflops:.0f}")  # fmt: skip
        del gen, critic
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if len(args.frames) > 1:
        lo, hi = min(args.frames), max(args.frames)
        print(f"headline: peak({hi}) / peak({lo}) = {peaks[hi] / max(peaks[lo], 1e-9):.2f}")


if __name__ == "__main__":
    main()
