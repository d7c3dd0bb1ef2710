"""Train the toy text-to-video model: a small ``WanTransformer3DModel`` and UMT5 encoder, jointly, by flow matching.

Data: a large set of rendered clips, encoded once by the frozen VAE and cached on disk, doubled by mirroring (the
latents are flipped left-right and "left"/"right" swapped in the prompt, which describes the mirrored scene exactly).
Captions are made deliberately noisy, as web captions are: in ``caption_color_noise`` of them one colour word is
replaced by another palette colour, so the model draws scenes well but binds colour to shape less reliably, and reward
fine-tuning has something to fix.

The training loss uses the convention of Wan's ``FlowMatchEulerDiscreteScheduler``: ``x_t = (1 - s) x0 + s eps``,
the model predicts ``v = eps - x0`` at ``timestep = 1000 s``, and ``s`` is drawn uniformly and then shifted exactly as
the scheduler shifts its sigmas, so training covers the noise levels sampling visits. Prompts are encoded through the
pipeline's own ``encode_prompt`` with gradient to the text encoder, on ``text_tokens`` tokens and then zero-padded to
``max_sequence_length``: the encoder masks padding and ``encode_prompt`` zeroes everything past the prompt, so this
equals encoding at ``max_sequence_length`` exactly (checked by the tests) at a fraction of the cost, and 10% of them are replaced by the empty negative prompt so classifier-free guidance
works. Latents are the frozen VAE's posterior means, normalised with the statistics stored in the VAE config.

The result is a complete ``WanPipeline`` directory, loadable with ``WanGenerator.from_pretrained``.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from drf.device import resolve_device
from drf.geometry.distill import encode_latents
from drf.grad_window import GradWindow
from drf.models.tiny import build_tokenizer, preset
from drf.models.wan import WanGenerator
from drf.sampling import sample
from drf.toyworld import oracle
from drf.toyworld.alignment import alignment_summary
from drf.toyworld.assets import GENERATOR_DIR, HEIGHT, NUM_FRAMES, TRAIN_STATE_DIR, WIDTH
from drf.toyworld.scene import WORLD_COLORS
from drf.toyworld.train.data import Clips, cache_dir, clips
from drf.toyworld.train.loop import Clock, TrainState, log, lr_at, setup


@dataclass
class T2VTrainConfig:
    steps: int = field(default=6000, metadata={"help": "Optimizer steps."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation, batches and noise."})
    batch: int = field(default=16, metadata={"help": "Clips per step."})
    lr: float = field(default=1e-3, metadata={"help": "Peak learning rate (warm-up then cosine)."})
    text_lr: float = field(default=1e-3, metadata={"help": "Peak learning rate of the text encoder."})
    shift: float = field(default=5.0, metadata={"help": "Flow shift, shared by training and the saved scheduler."})
    cfg_dropout: float = field(default=0.1, metadata={"help": "Share of prompts replaced by the empty prompt."})
    caption_color_noise: float = field(
        default=0.2, metadata={"help": "Share of captions with one colour word replaced by another palette colour."}
    )
    max_sequence_length: int = field(
        default=64, metadata={"help": "Text tokens (the longest toy prompt has 54); sampling must use the same."}
    )
    text_tokens: int = field(default=64, metadata={"help": "Tokens the text encoder runs on in training (see below)."})
    train_clips: int = field(default=6000, metadata={"help": "Rendered training clips (twice as many with mirrors)."})
    eval_prompts: int = field(default=48, metadata={"help": "Held-out prompts sampled for the oracle score."})
    eval_seeds: int = field(default=1, metadata={"help": "Samples per held-out prompt in the final evaluation."})
    eval_steps: int = field(default=12, metadata={"help": "Sampling steps for the evaluation (the demo's)."})
    guidance: float = field(default=4.0, metadata={"help": "CFG scale for the evaluation samples (the demo's)."})
    minutes: float = field(default=0.0, metadata={"help": "Stop after this wall time (0: no cap)."})
    threads: int = field(default=2, metadata={"help": "CPU threads (both cores of the 2-core machine by default)."})
    checkpoint_minutes: float = field(default=3.0, metadata={"help": "Minutes between saves of the training state."})
    init_from: str = field(
        default="",
        metadata={"help": "Start from this pipeline directory's transformer and text encoder (continue a run with a "
                          "new schedule), else from scratch."},
    )


_MIRROR_WORDS = {"left": "right", "right": "left"}


def mirror_prompt(prompt: str) -> str:
    """The prompt of the left-right mirrored scene: "left" and "right" swap (pans, motions and relations alike)."""
    return re.sub(r"\b(left|right)\b", lambda m: _MIRROR_WORDS[m.group(1)], prompt)


def noisy_caption(prompt: str, rng: random.Random, share: float) -> str:
    """With probability ``share``, one colour word of ``prompt`` replaced by another palette colour."""
    found = [m for m in re.finditer(r"\b(" + "|".join(WORLD_COLORS) + r")\b", prompt)]
    if not found or rng.random() >= share:
        return prompt
    m = rng.choice(found)
    other = rng.choice([c for c in WORLD_COLORS if c != m.group(1)])
    return prompt[: m.start()] + other + prompt[m.end() :]


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The scheduler's time shift ``s = shift u / (1 + (shift - 1) u)`` applied to uniform draws."""
    return shift * u / (1 + (shift - 1) * u)


def cached_latents(vae_dir: Path, data: Clips, seed: int, device: torch.device) -> torch.Tensor:
    """``encode_clips`` of ``data``, stored in the clip cache under the VAE weights' digest (encoding thousands of
    clips costs minutes; a resumed run reads them back)."""
    from diffusers import AutoencoderKLWan

    weights = sorted(Path(vae_dir).glob("*.safetensors"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in weights)).hexdigest()[:12]
    path = cache_dir() / f"latents-train-{seed}-{len(data)}-{digest}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    vae = AutoencoderKLWan.from_pretrained(vae_dir, dtype=torch.float32).to(device).eval()
    latents = encode_clips(vae, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(latents, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return latents


@torch.no_grad()
def encode_clips(vae, data: Clips, batch: int = 8) -> torch.Tensor:
    """Normalised posterior means [N,16,F,h,w] of every clip, as ``WanGenerator.decode`` expects them."""
    return torch.cat([
        encode_latents(vae, data.frames(list(range(start, min(len(data), start + batch))))).cpu()
        for start in range(0, len(data), batch)
    ])


def encode_train_prompts(pipe, prompts: list[str], tokens: int, max_sequence_length: int, device) -> torch.Tensor:
    """``pipe.encode_prompt(prompts, max_sequence_length)`` with gradient, running the encoder on ``tokens`` only."""
    tokens = min(tokens, max_sequence_length)
    embeds, _ = pipe.encode_prompt(
        prompt=prompts, do_classifier_free_guidance=False, max_sequence_length=tokens, device=device
    )
    return torch.cat([embeds, embeds.new_zeros(len(prompts), max_sequence_length - tokens, embeds.shape[2])], dim=1)


def check_prompt_lengths(tokenizer, prompts: list[str], tokens: int) -> None:
    longest = max(len(ids) for ids in tokenizer(prompts)["input_ids"])
    if longest > tokens:
        raise ValueError(f"a training prompt has {longest} tokens, more than text_tokens={tokens}; raise text_tokens")


def build_pipeline(vae, seed: int, shift: float):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    arch = preset("wan-toyworld")
    transformer = WanTransformer3DModel(**arch.transformer)
    text_encoder = UMT5EncoderModel(UMT5Config(**arch.text_encoder))
    return WanPipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tokenizer(arch.text_encoder["vocab_size"]),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift),
    )


def load_weights(pipe, directory: Path) -> None:
    """Copy the transformer and text encoder weights of the pipeline saved in ``directory`` into ``pipe``."""
    from diffusers import WanTransformer3DModel
    from transformers import UMT5EncoderModel

    pipe.transformer.load_state_dict(WanTransformer3DModel.from_pretrained(directory / "transformer").state_dict())
    pipe.text_encoder.load_state_dict(UMT5EncoderModel.from_pretrained(directory / "text_encoder").state_dict())


def train_t2v(config: T2VTrainConfig, root: Path, device: str = "auto") -> tuple[object, dict]:
    """Train on the VAE in ``root/generator/vae``; save the whole pipeline to ``root/generator``.

    Resumable: the training state is saved under ``root/.train/`` every ``checkpoint_minutes`` and picked up by the
    same command after an interruption.
    """
    from diffusers import AutoencoderKLWan

    dev = resolve_device(device)
    setup(config.seed, dev, config.threads)
    generator_dir = Path(root) / GENERATOR_DIR
    vae = AutoencoderKLWan.from_pretrained(generator_dir / "vae", dtype=torch.float32).to(dev).eval()
    vae.requires_grad_(False)
    train = clips(config.train_clips, config.seed, "train")
    clock = Clock(config.minutes)
    latents = cached_latents(generator_dir / "vae", train, config.seed, dev)
    log(f"{len(train)} clips as latents {tuple(latents.shape[1:])} after {clock.elapsed:.0f}s")
    pipe = build_pipeline(vae, config.seed, config.shift)
    if config.init_from:
        load_weights(pipe, Path(config.init_from))
    pipe.to(dev)
    check_prompt_lengths(pipe.tokenizer, train.prompts, config.text_tokens)
    transformer, text_encoder = pipe.transformer.train(), pipe.text_encoder.train()
    optimizer = torch.optim.AdamW(
        [
            {"params": transformer.parameters(), "peak": config.lr},
            {"params": text_encoder.parameters(), "peak": config.text_lr},
        ],
        weight_decay=0.01,
    )
    gen = torch.Generator().manual_seed(config.seed)
    rng = random.Random(config.seed)
    state = TrainState(
        Path(root) / TRAIN_STATE_DIR / "t2v.pt", {"transformer": transformer, "text_encoder": text_encoder},
        optimizer, gen, clock, every_minutes=config.checkpoint_minutes,
    )
    state.restore()
    ema_loss = state.curve[-1][1] if state.curve else None
    while state.step < config.steps:
        step = state.step
        if clock.expired():
            log(f"time cap reached after {step} steps")
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, clock.progress(step, config.steps), group["peak"], warmup=100)
        index = torch.randint(len(train), (config.batch,), generator=gen)
        mirror = torch.rand(config.batch, generator=gen) < 0.5
        x0 = torch.where(mirror.view(-1, 1, 1, 1, 1), latents[index].flip(-1), latents[index]).to(dev)
        prompts = []
        for i, flip in zip(index.tolist(), mirror.tolist()):
            caption = noisy_caption(train.prompts[i], rng, config.caption_color_noise)
            caption = mirror_prompt(caption) if flip else caption
            prompts.append("" if rng.random() < config.cfg_dropout else caption)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        sigma = shifted_sigmas(torch.rand(config.batch, generator=gen), config.shift).to(dev)
        s = sigma.view(-1, 1, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        embeds = encode_train_prompts(pipe, prompts, config.text_tokens, config.max_sequence_length, dev)
        v = transformer(hidden_states=x_t, timestep=sigma * 1000, encoder_hidden_states=embeds, return_dict=False)[0]
        loss = ((v.float() - (noise - x0)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(transformer.parameters()) + list(text_encoder.parameters()), 1.0)
        optimizer.step()
        state.step += 1
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if step % 25 == 0:
            state.curve.append([step, round(ema_loss, 5), round(clock.elapsed, 1)])
        if step % 50 == 0:
            log(f"t2v step {step} loss {loss.item():.4f} (ema {ema_loss:.4f}) {clock.elapsed:.0f}s")
        state.save_if_due()
    train_seconds = round(clock.elapsed, 1)
    cpu_seconds = round(state.cpu_total(), 1)
    transformer.eval(), text_encoder.eval()
    pipe.to("cpu")
    # save_pretrained rewrites vae/ too (its config gains loading metadata); keep the VAE run's exact files so its
    # manifest entry stays valid.
    vae_files = {p: p.read_bytes() for p in (generator_dir / "vae").iterdir() if p.is_file()}
    pipe.save_pretrained(generator_dir, safe_serialization=True)
    for path, data in vae_files.items():
        path.write_bytes(data)
    metrics = evaluate_t2v(generator_dir, config)
    log(f"t2v metrics {metrics}")
    params = {
        "transformer": sum(p.numel() for p in transformer.parameters()),
        "text_encoder": sum(p.numel() for p in text_encoder.parameters()),
    }
    state.finish()
    summary = {
        "steps": state.step,
        "train_seconds": train_seconds,
        "cpu_seconds": cpu_seconds,
        "final_loss_ema": round(ema_loss or float("nan"), 4),
        "loss_curve": {"columns": ["step", "loss_ema", "seconds"], "rows": state.curve},
        "captions": f"noisy on purpose: in {config.caption_color_noise:.0%} of training captions one colour word is "
                    "replaced by another palette colour; half the clips mirrored with left/right swapped",
        "parameters": params,
        "metrics": metrics,
        "config": asdict(config),
        "data": {"train_clips": len(train), "split": "train", "frames": NUM_FRAMES, "size": HEIGHT},
        "sampling": {"scheduler": "euler", "shift": config.shift, "steps": config.eval_steps,
                     "guidance_scale": config.guidance},
    }
    return pipe, summary


@torch.no_grad()
def sample_videos(generator, prompts: list[str], steps: int, guidance: float, seed: int, batch: int = 8) -> torch.Tensor:
    """Frames [N,T,3,H,W] in [0,1] sampled with ``drf.sampling.sample`` (the chain DRF trains through)."""
    rng = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, len(prompts), batch):
        cond = generator.encode_prompts(prompts[start : start + batch], guidance)
        rollout = sample(generator, cond, GradWindow.none(steps), rng=rng)
        out.append(generator.decode(rollout.latents).cpu())
    return torch.cat(out)


def evaluate_t2v(generator_dir: Path, config: T2VTrainConfig, seed: int | None = None) -> dict:
    """Oracle alignment of samples on held-out prompts (``eval_seeds`` samples each, the demo's sampling settings),
    next to the same prompts' renders (the ceiling) and the samples judged against other prompts' questions (what a
    scene-like but unaligned video gets)."""
    seed = config.seed + 1 if seed is None else seed
    held_out = clips(config.eval_prompts, seed, "eval")
    generator = WanGenerator.from_pretrained(
        str(generator_dir), height=HEIGHT, width=WIDTH, num_frames=NUM_FRAMES,
        max_sequence_length=config.max_sequence_length,
    )
    prompts = held_out.prompts * config.eval_seeds
    videos = sample_videos(generator, prompts, config.eval_steps, config.guidance, seed)
    sample_facts = [oracle.analyze(v) for v in videos]
    render_facts = [oracle.analyze(held_out.frames(i)) for i in range(len(held_out))]
    shifted = [prompts[(i + 1) % len(prompts)] for i in range(len(prompts))]
    own = alignment_summary(sample_facts, prompts)
    other = alignment_summary(sample_facts, shifted)
    return {
        "samples": own,
        "renders": alignment_summary(render_facts, held_out.prompts),
        "samples_vs_other_prompts": other,
        "own_minus_other": round(own["alignment"] - other["alignment"], 4),
        "eval_prompts": len(held_out),
        "eval_seeds": config.eval_seeds,
        "eval_split": "eval",
        "scene_seed": seed,
    }
