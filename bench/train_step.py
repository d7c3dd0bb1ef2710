"""Where a DRF training step spends its time and memory: sampling, decode, rewards, backward, for K = 1, 2, 4.

Runs the trainer's own micro-step (``DRFTrainer.micro_step``) on random-weight models, so the figures are those of a
real step. Default: the ``wan-small`` preset (1.3M-parameter transformer) at 17x64x64 with the tiny Qwen2-VL critic,
on whatever device is there. ``--large`` (CUDA only): a Wan2.1-T2V-1.3B-sized transformer and VAE with a
Qwen2.5-VL-3B-sized critic in bf16 at 480x832, 33 frames, K=1 — the memory question for one 80 GB GPU.

Peak memory per phase is the CUDA allocator peak inside the phase on a GPU; on CPU it is the peak resident set size
sampled every 2 ms inside the phase, minus the resident size when the phase began (the extra memory that phase
needed); the script re-executes itself with ``MALLOC_MMAP_THRESHOLD_=65536`` so glibc returns freed tensor memory to
the system and the resident size follows what is allocated. Prints one line per figure and ends with the headline ratios; never asserts.

    python bench/train_step.py [--ks 1,2,4] [--steps 3] [--large]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHASES = ("sampling", "decode", "rewards", "backward")
PROMPT = "a red cube on a checkered floor"


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PhaseMeter:
    """``with meter("decode"): ...`` accumulates seconds and keeps the largest extra memory seen in each phase."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.peak_mb: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, phase: str):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = 0.0
        else:
            base, peak, stop = _rss_mb(), [0.0], threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], _rss_mb())
                    time.sleep(0.002)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize(self.device)
                used = torch.cuda.max_memory_allocated(self.device) / 2**20
            else:
                stop.set()
                sampler.join()
                used = max(peak[0], _rss_mb()) - base
            self.seconds[phase] += time.perf_counter() - start
            self.peak_mb[phase] = max(self.peak_mb[phase], used)


# ----------------------------------------------------------------------------------------------------------------
# models


def small_models(device: torch.device, family: str = "wan"):
    """A small generator (wan: wan-small at 17x64x64; ltx: ltx-tiny at 17x64x96) and the tiny Qwen2-VL critic."""
    from critics.config import CriticConfig
    from critics.registry import load_critic
    from drf.models.registry import ModelConfig, load_generator

    model = (
        dict(family="wan", tiny="wan-small", height=64, width=64, num_frames=17, max_sequence_length=32)
        if family == "wan"
        else dict(family="ltx", tiny="ltx-tiny", height=64, width=96, num_frames=17, max_sequence_length=32)
    )
    gen = load_generator(ModelConfig(**model), device=device)
    critic = load_critic(CriticConfig(family="qwen2_vl", tiny=True, device=str(device)))
    return gen, critic, model


def _bf16_keeping_fp32_modules(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in bf16 except the modules it keeps in fp32, as ``from_pretrained(torch_dtype=bf16)`` loads it."""
    model.to(torch.bfloat16)
    keep = set(model._keep_in_fp32_modules or ())
    for name, param in model.named_parameters():
        if keep & set(name.split(".")):
            param.data = param.data.float()
    return model


def _pipeline_parts(transformer, vae, text_encoder, scheduler) -> dict:
    """A pipeline's keyword components, in eval mode, with the tiny tokenizer (only the embeddings' width matters)."""
    from drf.models.tiny import build_tokenizer

    return dict(
        transformer=transformer.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=build_tokenizer(),
        scheduler=scheduler,
    )


def large_wan(device: torch.device, num_frames: int):
    """Random weights at Wan2.1-T2V-1.3B size (bf16, VAE fp32) at 480x832 -> (generator, model config dict)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from drf.models.wan import WanGenerator

    with torch.device(device):
        transformer = _bf16_keeping_fp32_modules(
            WanTransformer3DModel(
                patch_size=(1, 2, 2),
                num_attention_heads=12,
                attention_head_dim=128,
                in_channels=16,
                out_channels=16,
                text_dim=4096,
                freq_dim=256,
                ffn_dim=8960,
                num_layers=30,
                cross_attn_norm=True,
                qk_norm="rms_norm_across_heads",
                eps=1e-6,
            )
        )
        vae = AutoencoderKLWan(
            base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True]
        )
        text_encoder = UMT5EncoderModel(
            UMT5Config(vocab_size=384, d_model=4096, d_kv=64, d_ff=256, num_layers=1, num_heads=4)
        ).to(torch.bfloat16)
    components = _pipeline_parts(transformer, vae, text_encoder, FlowMatchEulerDiscreteScheduler(shift=3.0))
    size = dict(height=480, width=832, num_frames=num_frames, max_sequence_length=512)
    gen = WanGenerator.from_components(components, scheduler="euler", shift=3.0, **size)
    return gen, dict(family="wan", path="random-1.3b", dtype="bfloat16", scheduler="euler", shift=3.0, **size)


def large_ltx(device: torch.device, num_frames: int):
    """Random weights at LTX-Video 2B size (0.9.0 layout: 28 layers of 32x64 heads, 128-channel VAE with 32x/8x
    compression; bf16, VAE fp32) at 480x704 -> (generator, model config dict)."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from drf.models.ltx import LTXGenerator
    from drf.models.tiny import LTX_PRESETS

    with torch.device(device):
        transformer = _bf16_keeping_fp32_modules(LTXVideoTransformer3DModel())  # diffusers' defaults: the 2B model
        vae = AutoencoderKLLTXVideo()  # diffusers' defaults: LTX-Video 0.9.0's VAE
        text_encoder = T5EncoderModel(
            T5Config(vocab_size=384, d_model=4096, d_kv=64, d_ff=256, num_layers=1, num_heads=4)
        ).to(torch.bfloat16)
    scheduler = FlowMatchEulerDiscreteScheduler(**LTX_PRESETS["ltx-tiny"].scheduler)  # LTX-Video 0.9's settings
    components = _pipeline_parts(transformer, vae, text_encoder, scheduler)
    size = dict(height=480, width=704, num_frames=num_frames, max_sequence_length=128)
    gen = LTXGenerator.from_components(components, scheduler="euler", **size)
    return gen, dict(family="ltx", path="random-ltx-2b", dtype="bfloat16", scheduler="euler", **size)


def large_models(device: torch.device, num_frames: int = 33, family: str = "wan"):
    """A real-size random generator (``large_wan`` or ``large_ltx``) and a Qwen2.5-VL-3B-sized critic (bf16).

    The text encoder only has to emit 4096-wide embeddings (it is outside the gradient path), so it is a one-layer
    (U)T5 of that width rather than a 4.7B-parameter (U)T5-XXL.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from critics.config import CriticConfig
    from critics.qwen2_vl import QWEN_FAMILIES, QwenVLCritic
    from critics.tiny import build_tokenizer as build_chat_tokenizer
    from critics.tiny import qwen_vision_token_ids

    gen, model_cfg = (large_wan if family == "wan" else large_ltx)(device, num_frames)
    tokenizer = build_chat_tokenizer("qwen2_5_vl")
    ids = qwen_vision_token_ids(tokenizer)
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=151936,
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=2048,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31],
        ),
        **ids,
    )
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).eval()
    critic_cfg = CriticConfig(family="qwen2_5_vl", tiny=True, dtype="bfloat16", device=str(device))
    critic = QwenVLCritic(model, tokenizer, critic_cfg, QWEN_FAMILIES["qwen2_5_vl"])
    return gen, critic, model_cfg


# ----------------------------------------------------------------------------------------------------------------
# the run


def run_config(out_dir: Path, model: dict, k: int, large: bool, checkpointing: bool, frames: str):
    from critics.config import CriticConfig
    from drf.frames import FramesConfig
    from drf.grad_window import GradWindowConfig
    from drf.logging import LoggingConfig
    from drf.models.registry import ModelConfig
    from drf.sampling import SamplingConfig
    from trainers.drf import DRFConfig, DRFRunConfig

    prompts = out_dir / "prompts.txt"
    prompts.write_text(PROMPT + "\n")
    return DRFRunConfig(
        name=f"bench_k{k}",
        prompts=str(prompts),
        model=ModelConfig(**model),
        sampling=SamplingConfig(
            num_steps=20 if large else 8,
            guidance_scale=5.0,
            grad_window=GradWindowConfig(kind="last_k", k=k, checkpointing=checkpointing),
            frames=FramesConfig(policy=frames, n=4),
        ),
        critic=CriticConfig(family="qwen2_5_vl" if large else "qwen2_vl", tiny=True),
        logging=LoggingConfig(output_dir=str(out_dir)),
        drf=DRFConfig(
            lora_rank=32 if large else 8,
            lora_alpha=32 if large else 8,
            gradient_checkpointing=large,
            mixed_precision="bf16" if large else "no",
            autocast_decode=large,
            export=False,
        ),
    )


def measure(
    gen, critic, model: dict, k: int, steps: int, large: bool, device: torch.device, checkpointing: bool, frames: str
) -> PhaseMeter:
    from trainers.drf import DRFTrainer

    with tempfile.TemporaryDirectory(prefix="drf-bench-") as tmp:
        trainer = DRFTrainer(
            run_config(Path(tmp), model, k, large, checkpointing, frames), generator=gen, critic=critic
        )
        meter = PhaseMeter(device)
        trainer.micro_step(0, 0, PhaseMeter(device))  # warm-up (allocator, lazy inits)
        for step in range(1, steps + 1):
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.micro_step(step, 0, meter)
    for phase in PHASES:
        meter.seconds[phase] /= steps
    return meter


def main() -> None:
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", default="1,2,4", help="gradient window sizes to measure")
    parser.add_argument("--steps", type=int, default=3, help="timed micro-steps per K (after one warm-up)")
    parser.add_argument("--large", action="store_true", help="1.3B-sized generator + 3B-sized critic (CUDA only)")
    parser.add_argument(
        "--checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="recompute windowed steps in backward (sampling.grad_window.checkpointing)",
    )
    parser.add_argument(
        "--frames",
        choices=("every_n", "first", "middle", "all"),
        help="frames decoded with gradient and scored (every_n uses n=4). Default: every_n; with --large: first "
        "(bench/gpu_check.py decodes all frames)",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.large and device.type != "cuda":
        print("--large needs a CUDA GPU (random 1.3B + 3B models at 480x832x33); skipping")
        return
    ks = [1] if args.large else [int(k) for k in args.ks.split(",")]
    frames = args.frames or ("first" if args.large else "every_n")
    gen, critic, model = (large_models if args.large else small_models)(device)
    base = copy.deepcopy(gen.pipe.transformer)
    what = "large (1.3B-sized Wan + 3B-sized Qwen2.5-VL, bf16)" if args.large else "wan-small + tiny qwen2_vl"
    print(f"# train step on {device} ({what}), {model['num_frames']}x{model['height']}x{model['width']}, "
          f"{args.steps} steps per K, frames {frames}, window checkpointing {'on' if args.checkpointing else 'off'}")  # fmt: skip
    results = {}
    for k in ks:
        gen.pipe.transformer = copy.deepcopy(base)  # every K starts from the adapter-free transformer
        meter = measure(gen, critic, model, k, args.steps, args.large, device, args.checkpointing, frames)
        total = sum(meter.seconds[p] for p in PHASES)
        results[k] = (total, max(meter.peak_mb.values()))
        for phase in PHASES:
            print(f"K={k} {phase:9s} time_s={meter.seconds[phase]:.3f} peak_mb={meter.peak_mb[phase]:.0f}")
        print(f"K={k} total     time_s={total:.3f} peak_mb={results[k][1]:.0f}")
    if len(ks) > 1:
        lo, hi = min(ks), max(ks)
        print(f"headline: K={hi} vs K={lo}: step time x{results[hi][0] / results[lo][0]:.2f}, "
              f"peak memory x{results[hi][1] / max(results[lo][1], 1e-9):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
