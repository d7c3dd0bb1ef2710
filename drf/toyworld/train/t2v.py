"""Train the toy text-to-video model: a small ``WanTransformer3DModel`` and UMT5 encoder, jointly, by flow matching.

Data: rendered clips of the world, encoded once by the frozen VAE and cached on disk; captions state everything
the world varies and are never corrupted. No mirroring: a latent flipped left-right is not the latent of the flipped
clip (the VAE is not mirror-symmetric), and clips are cheap to render, so the data set is simply larger.

The loss uses the convention of Wan's ``FlowMatchEulerDiscreteScheduler``: ``x_t = (1 - s) x0 + s eps``, the model
predicts ``v = eps - x0`` at ``timestep = 1000 s``. ``s`` is drawn from a logit-normal and then shifted as the
scheduler shifts its sigmas, with a shift suited to the few hundred tokens of a toy clip (Wan's 5 is meant for ~32k
tokens and put the median training sigma at 0.83). Latent cells covered by an object weigh ``1 + object_weight``:
objects are a tenth of the cells and carry everything the prompt says. Prompts are encoded through the pipeline's
own ``encode_prompt`` with gradient to the text encoder; 10% are replaced by the empty negative prompt so
classifier-free guidance works. The run keeps an EMA of the weights (diffusers' ``EMAModel``), which is what the
probes sample and what is shipped.

**Probes** decide early whether a run is learning the prompt, every ``probe_minutes`` of CPU time (the overall loss
is dominated by high-noise steps and hides it): the loss per sigma bucket on held-out clips, the **text gain**
``1 - own / shuffled`` (the object-cell x0 error at sigma 0.7 with each clip's own prompt over that with another
clip's), and **object present** (the oracle's share of prompted objects found in EMA samples of held-out prompts).

One continuous run: the training state (weights, optimiser, EMA, data and noise generators, probes) is saved every
few minutes and the same command resumes it. The result is a complete ``WanPipeline`` directory, loadable with
``WanGenerator.from_pretrained``.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from drf.device import resolve_device
from drf.geometry.distill import encode_latents
from drf.grad_window import GradWindow
from drf.models.tiny import build_tokenizer, preset
from drf.models.wan import WanGenerator
from drf.sampling import sample
from drf.toyworld import oracle
from drf.toyworld.alignment import alignment_summary
from drf.toyworld.assets import GENERATOR_DIR, HEIGHT, TRAIN_STATE_DIR, WIDTH
from drf.toyworld.scene import WORLD_FRAMES
from drf.toyworld.train.data import Clips, cache_dir, clips
from drf.toyworld.train.loop import Clock, TrainState, log, lr_at, setup

PROBE_SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)
TEXT_GAIN_SIGMA = 0.7


@dataclass
class T2VTrainConfig:
    steps: int = field(default=30000, metadata={"help": "Optimizer steps."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation, batches and noise."})
    batch: int = field(default=16, metadata={"help": "Clips per step."})
    frames: int = field(default=WORLD_FRAMES, metadata={"help": "Frames per clip (4n+1)."})
    lr: float = field(default=1e-3, metadata={"help": "Peak learning rate (warm-up then cosine)."})
    text_lr: float = field(default=1e-3, metadata={"help": "Peak learning rate of the text encoder."})
    shift: float = field(
        default=1.5, metadata={"help": "Flow shift, shared by training and the saved scheduler (1-2 suits the few "
                                       "hundred tokens of a toy clip)."}
    )
    logit_mean: float = field(default=0.0, metadata={"help": "Mean of the logit-normal the training sigmas come from."})
    logit_std: float = field(default=1.0, metadata={"help": "Std of the logit-normal the training sigmas come from."})
    object_weight: float = field(
        default=4.0, metadata={"help": "Extra loss weight of latent cells an object covers (1 + this)."}
    )
    ema_decay: float = field(default=0.999, metadata={"help": "Decay of the weights' EMA (with diffusers' warm-up)."})
    cfg_dropout: float = field(default=0.1, metadata={"help": "Share of prompts replaced by the empty prompt."})
    max_sequence_length: int = field(
        default=32, metadata={"help": "Text tokens (toy captions take at most 25); sampling must use the same."}
    )
    train_clips: int = field(default=12000, metadata={"help": "Rendered training clips."})
    probe_clips: int = field(default=32, metadata={"help": "Held-out clips for the loss and text-gain probes."})
    probe_prompts: int = field(default=16, metadata={"help": "Held-out prompts sampled for the object-present probe."})
    probe_minutes: float = field(default=10.0, metadata={"help": "CPU minutes between probes."})
    eval_prompts: int = field(default=48, metadata={"help": "Held-out prompts sampled for the oracle score."})
    eval_seeds: int = field(default=1, metadata={"help": "Samples per held-out prompt in the final evaluation."})
    eval_steps: int = field(default=12, metadata={"help": "Sampling steps for evaluation and probes (the demo's)."})
    guidance: float = field(default=4.0, metadata={"help": "CFG scale for evaluation and probes (the demo's)."})
    minutes: float = field(default=0.0, metadata={"help": "Stop after this wall time (0: no cap)."})
    threads: int = field(default=2, metadata={"help": "CPU threads (both cores of the 2-core machine by default)."})
    checkpoint_minutes: float = field(default=3.0, metadata={"help": "Minutes between saves of the training state."})


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The scheduler's time shift ``s = shift u / (1 + (shift - 1) u)`` applied to draws ``u`` in (0, 1)."""
    return shift * u / (1 + (shift - 1) * u)


def training_sigmas(count: int, config: T2VTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Noise levels [count]: a logit-normal draw, shifted like the sampler's sigmas."""
    u = torch.sigmoid(config.logit_mean + config.logit_std * torch.randn(count, generator=generator))
    return shifted_sigmas(u, config.shift)


def latent_object_masks(objects: torch.Tensor) -> torch.Tensor:
    """Pixel object masks [N,T,H,W] bool -> the latent cells they touch [N,F,h,w] bool, for the toy VAE's causal 4x
    time (frame 0 alone, then groups of four) and 4x space compression."""
    first, rest = objects[:, :1], objects[:, 1:]
    groups = rest.reshape(rest.shape[0], -1, 4, *rest.shape[2:]).any(2)
    per_frame = torch.cat([first, groups], 1).float()
    n, f, h, w = per_frame.shape
    return F.max_pool2d(per_frame.reshape(n * f, 1, h, w), 4).reshape(n, f, h // 4, w // 4) > 0


def cached_latents(vae_dir: Path, data: Clips, name: str, device: torch.device) -> torch.Tensor:
    """``encode_clips`` of ``data``, stored in the clip cache under the VAE weights' and the clips' digests (encoding
    thousands of clips costs minutes; a resumed run reads them back)."""
    from diffusers import AutoencoderKLWan

    weights = sorted(Path(vae_dir).glob("*.safetensors"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in weights)).hexdigest()[:12]
    clip_digest = hashlib.sha256("\n".join(data.prompts).encode()).hexdigest()[:8]
    path = cache_dir() / f"latents-{name}-{len(data)}-{clip_digest}-{digest}.pt"
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


def encode_train_prompts(pipe, prompts: list[str], max_sequence_length: int, device) -> torch.Tensor:
    """``pipe.encode_prompt(prompts, max_sequence_length)`` with gradient to the text encoder."""
    embeds, _ = pipe.encode_prompt(
        prompt=prompts, do_classifier_free_guidance=False, max_sequence_length=max_sequence_length, device=device
    )
    return embeds


def check_prompt_lengths(tokenizer, prompts: list[str], tokens: int) -> None:
    longest = max(len(ids) for ids in tokenizer(prompts)["input_ids"])
    if longest > tokens:
        raise ValueError(f"a training prompt has {longest} tokens, more than max_sequence_length={tokens}")


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
        tokenizer=build_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift),
    )


def flow_loss(pipe, x0: torch.Tensor, cells: torch.Tensor, prompts: list[str], sigma: torch.Tensor,
              noise: torch.Tensor, config: T2VTrainConfig) -> torch.Tensor:
    """Per-clip object-weighted flow-matching loss [B] at noise levels ``sigma`` [B]; ``cells`` [B,F,h,w] bool."""
    s = sigma.view(-1, 1, 1, 1, 1)
    x_t = (1 - s) * x0 + s * noise
    embeds = encode_train_prompts(pipe, prompts, config.max_sequence_length, x0.device)
    v = pipe.transformer(hidden_states=x_t, timestep=sigma * 1000, encoder_hidden_states=embeds, return_dict=False)[0]
    weights = 1.0 + config.object_weight * cells[:, None].float()
    return ((v.float() - (noise - x0)) ** 2 * weights).flatten(1).mean(1) / weights.flatten(1).mean(1)


@dataclass
class ProbeData:
    """Held-out clips (latents [N,16,F,h,w], object cells [N,F,h,w], prompts) with fixed noise, and held-out prompts
    to sample: the same inputs at every probe, so the curves show the model changing, not the draw."""

    latents: torch.Tensor
    cells: torch.Tensor
    prompts: list[str]
    noise: torch.Tensor
    sample_prompts: list[str]


@torch.no_grad()
def probe(generator: WanGenerator, data: ProbeData, config: T2VTrainConfig) -> dict:
    """Loss per sigma bucket, text gain at sigma 0.7 and object present of samples (see the module docstring)."""
    pipe, n = generator.pipe, len(data.prompts)
    losses = {}
    for sigma in PROBE_SIGMAS:
        level = torch.full((n,), sigma)
        losses[str(sigma)] = round(float(flow_loss(pipe, data.latents, data.cells, data.prompts, level, data.noise,
                                                   config).mean()), 4)
    shuffled = data.prompts[1:] + data.prompts[:1]
    errors = {}
    for name, prompts in (("own", data.prompts), ("shuffled", shuffled)):
        s = TEXT_GAIN_SIGMA
        x_t = (1 - s) * data.latents + s * data.noise
        embeds = encode_train_prompts(pipe, prompts, config.max_sequence_length, data.latents.device)
        v = pipe.transformer(hidden_states=x_t, timestep=torch.full((n,), s * 1000), encoder_hidden_states=embeds,
                             return_dict=False)[0]
        err = ((x_t - s * v) - data.latents) ** 2  # the predicted x0's error
        cells = data.cells[:, None].expand_as(err)
        errors[name] = float(err[cells].mean())
    videos = sample_videos(generator, data.sample_prompts, config.eval_steps, config.guidance, config.seed + 7)
    found = alignment_summary([oracle.analyze(v) for v in videos], data.sample_prompts)
    return {
        "loss_by_sigma": losses,
        "text_gain": round(1 - errors["own"] / errors["shuffled"], 4),
        "object_present": found["object_present"],
        "alignment": found["alignment"],
    }


def train_t2v(config: T2VTrainConfig, root: Path, device: str = "auto") -> tuple[object, dict]:
    """Train on the VAE in ``root/generator/vae``; save the whole pipeline (EMA weights) to ``root/generator``.

    Resumable: the training state is saved under ``root/.train/`` every ``checkpoint_minutes`` and picked up by the
    same command after an interruption.
    """
    from diffusers import AutoencoderKLWan
    from diffusers.training_utils import EMAModel

    dev = resolve_device(device)
    setup(config.seed, dev, config.threads)
    generator_dir = Path(root) / GENERATOR_DIR
    vae = AutoencoderKLWan.from_pretrained(generator_dir / "vae", dtype=torch.float32).to(dev).eval()
    vae.requires_grad_(False)
    clock = Clock(config.minutes)
    train = clips(config.train_clips, config.seed, "train", num_frames=config.frames)
    latents = cached_latents(generator_dir / "vae", train, f"train-{config.seed}", dev)
    cells = latent_object_masks(train.objects)
    held_out = clips(config.probe_clips, config.seed + 2, "eval", num_frames=config.frames)
    probe_data = ProbeData(
        latents=cached_latents(generator_dir / "vae", held_out, f"eval-{config.seed + 2}", dev).to(dev),
        cells=latent_object_masks(held_out.objects).to(dev),
        prompts=held_out.prompts,
        noise=torch.randn(latents[: config.probe_clips].shape, generator=torch.Generator().manual_seed(1)).to(dev),
        sample_prompts=held_out.prompts[: config.probe_prompts],
    )
    log(f"{len(train)} clips as latents {tuple(latents.shape[1:])} after {clock.elapsed:.0f}s")
    pipe = build_pipeline(vae, config.seed, config.shift).to(dev)
    check_prompt_lengths(pipe.tokenizer, train.prompts, config.max_sequence_length)
    # The probes sample through drf's own chain; the generator freezes what it wraps, so training re-enables it.
    sampler = WanGenerator(pipe, height=HEIGHT, width=WIDTH, num_frames=config.frames,
                           max_sequence_length=config.max_sequence_length)
    transformer, text_encoder = pipe.transformer.train(), pipe.text_encoder.train()
    transformer.requires_grad_(True), text_encoder.requires_grad_(True)
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": transformer.parameters(), "peak": config.lr},
            {"params": text_encoder.parameters(), "peak": config.text_lr},
        ],
        weight_decay=0.01,
    )
    ema = EMAModel(params, decay=config.ema_decay)
    gen = torch.Generator().manual_seed(config.seed)
    state = TrainState(
        Path(root) / TRAIN_STATE_DIR / "t2v.pt",
        {"transformer": transformer, "text_encoder": text_encoder, "ema": ema},
        optimizer, gen, clock, every_minutes=config.checkpoint_minutes,
    )
    state.restore()
    ema_loss = state.curve[-1][1] if state.curve else None
    while state.step < config.steps:
        step = state.step
        if clock.expired():
            log(f"time cap reached after {step} steps")
            break
        if state.probe_due(config.probe_minutes):
            state.probes.append({"step": step, "cpu_minutes": round(state.cpu_total() / 60, 1),
                                 **with_ema(ema, params, lambda: probe(sampler, probe_data, config))})
            log(f"t2v probe {state.probes[-1]}")
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, clock.progress(step, config.steps), group["peak"], warmup=100)
        index = torch.randint(len(train), (config.batch,), generator=gen)
        x0 = latents[index].to(dev)
        # The global ``random`` is seeded by ``setup`` and saved with the training state, so a resumed run draws on.
        prompts = ["" if random.random() < config.cfg_dropout else train.prompts[i] for i in index.tolist()]
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        sigma = training_sigmas(config.batch, config, gen).to(dev)
        loss = flow_loss(pipe, x0, cells[index].to(dev), prompts, sigma, noise, config).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.step(params)
        state.step += 1
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if step % 25 == 0:
            state.curve.append([step, round(ema_loss, 5), round(clock.elapsed, 1)])
        if step % 50 == 0:
            log(f"t2v step {step} loss {loss.item():.4f} (ema {ema_loss:.4f}) {clock.elapsed:.0f}s")
        state.save_if_due()
    state.save_if_due(force=True)
    train_seconds = round(clock.elapsed, 1)
    cpu_seconds = round(state.cpu_total(), 1)
    ema.copy_to(params)
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
    parameters = {
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
        "probes": state.probes,
        "captions": "every caption states what the world varies; none corrupted; no mirroring",
        "parameters": parameters,
        "metrics": metrics,
        "config": asdict(config),
        "data": {"train_clips": len(train), "split": "train", "frames": config.frames, "size": HEIGHT},
        "sampling": {"scheduler": "euler", "shift": config.shift, "steps": config.eval_steps,
                     "guidance_scale": config.guidance},
    }
    return pipe, summary


def with_ema(ema, params: list[torch.nn.Parameter], run):
    """``run()`` with the EMA weights swapped into ``params`` (and the training weights put back after)."""
    ema.store(params)
    ema.copy_to(params)
    try:
        return run()
    finally:
        ema.restore(params)


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
    held_out = clips(config.eval_prompts, seed, "eval", num_frames=config.frames)
    generator = WanGenerator.from_pretrained(
        str(generator_dir), height=HEIGHT, width=WIDTH, num_frames=config.frames,
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
