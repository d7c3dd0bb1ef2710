"""``drf plan`` against the measured step: the memory one training step adds on top of what is held before it, as
planned on fake tensors and as measured on this CPU with the real models, for configs of different shapes.

Each config runs in two child processes. ``plan``: ``drf.plan.step.plan_step`` (fake tensors, the recipe's own
``train_step``) with the scratch the CPU's convolution kernels hold inside (``drf.plan.kernels``: oneDNN's blocked
copies, im2col columns), which the measured step allocates too; the figure is the largest phase peak less what exists
before the step (weights, LoRA, EMA) and less the optimiser state (which the measured step finds already allocated).
``measure``: the recipe's trainer on the real models (random or shipped weights), one warm-up step (optimiser state,
lazy initialisation), then a second step whose peak resident set, sampled every 2 ms, less the resident set just before
it, is the figure (``bench.train_step.PhaseMeter``); glibc is told to map every allocation over 64 KB on its own
(``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave the resident set. Prints one line per config with both
figures and their ratio, then the headline: the ratios' range. Never asserts.

    python bench/plan_accuracy.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.train_step import PhaseMeter  # noqa: E402

MB = 2**20

# name -> (config, overrides): small, the toy world, and a decode-heavy one (every frame decoded and scored).
DECODE_HEAVY = ["model.tiny=wan-small", "model.height=128", "model.width=128", "sampling.frames.policy=all",
                "model.decode_checkpointing=frames", "drf.gradient_accumulation=1"]  # fmt: skip
CONFIGS = {
    "tiny": ("configs/tiny_drf.yaml", ["model.height=64", "model.width=64"]),
    "toy world": ("configs/toyworld_drf.yaml", []),
    "decode-heavy 33 frames": ("configs/tiny_drf.yaml", [*DECODE_HEAVY, "model.num_frames=33"]),
    "decode-heavy 81 frames": ("configs/tiny_drf.yaml", [*DECODE_HEAVY, "model.num_frames=81"]),
}


def _config(path: str, overrides: list[str], out_dir: str):
    import drf.toyworld.commands  # noqa: F401  (registers the toy world's judge, as the CLI does)
    from drf.commands import resolve_schema
    from drf.config import load_config

    extra = [f"logging.output_dir={out_dir}", "logging.sample_every=0", "logging.report=false", "runtime.threads=1"]
    return load_config(ROOT / path, resolve_schema(str(ROOT / path)), [*overrides, *extra])


def planned(path: str, overrides: list[str]) -> dict:
    from drf.plan.kernels import cpu_conv_scratch
    from drf.plan.step import plan_step
    from drf.plan.tracker import OPTIMIZER, SCRATCH

    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_step(_config(path, overrides, tmp), kernel_scratch=cpu_conv_scratch)
    held = sum(plan.static.values())
    added = max(p.bytes - held - p.by_kind.get(OPTIMIZER, 0) for p in plan.phases.values())
    return {
        "mb": added / MB,
        "phase": plan.peak_phase,
        "seconds": plan.seconds,
        "scratch_mb": plan.phases[plan.peak_phase].by_kind.get(SCRATCH, 0) / MB,
    }


def measured(path: str, overrides: list[str]) -> dict:
    import gc

    from trainers.plugins import resolve
    from trainers.recipes import RECIPES

    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(path, overrides, tmp)
        recipe = next(name for name in RECIPES if hasattr(cfg, name))
        trainer = resolve(RECIPES[recipe].trainer)(cfg)
        trainer.train_step(0)
        gc.collect()
        meter = PhaseMeter(torch.device("cpu"))
        with meter("step"):
            trainer.train_step(1)
    return {"mb": meter.peak_mb["step"], "seconds": meter.seconds["step"]}


def child(kind: str, name: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, __file__, "--child", kind, name], capture_output=True, text=True, cwd=ROOT, env=env
    )
    if run.returncode:
        raise RuntimeError(f"{kind} {name} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="configs to run (default: all)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, name = args.child
        print(json.dumps((planned if kind == "plan" else measured)(*CONFIGS[name])))
        return
    ratios = []
    for name in args.only or CONFIGS:
        plan, real = child("plan", name), child("measure", name)
        ratio = plan["mb"] / real["mb"]
        ratios.append(ratio)
        print(f"{name:24s} planned {plan['mb']:8.1f} MB (peak in {plan['phase']}, of which conv scratch "
              f"{plan['scratch_mb']:.1f} MB; planned in {plan['seconds']:.0f} s)  "
              f"measured {real['mb']:8.1f} MB  planned/measured {ratio:.3f} "
              f"(difference {plan['mb'] - real['mb']:+.1f} MB)", flush=True)  # fmt: skip
    print(f"headline: planned/measured from {min(ratios):.3f} to {max(ratios):.3f} over {len(ratios)} configs")


if __name__ == "__main__":
    main()
