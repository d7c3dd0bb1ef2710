"""Train the toy Wan VAE (``AutoencoderKLWan``) on rendered clips and store its latent statistics.

Reconstruction is L1 + MSE of the decoded posterior mean, plus L1 on image gradients (an edge term: without it a
small VAE rounds the corners of cubes and smears colour across edges), all weighted up on object pixels, with a very
small KL term (the posterior stays close to deterministic, as in Wan). Training starts on 5-frame windows (the lone
first frame and one 4-frame chunk) and ends on whole clips: the causal VAE passes a feature cache from chunk to
chunk, and a VAE that never saw a chunk follow a chunk reconstructs later frames badly (22 dB on frames 0-4, 14 dB
after). After training, the per-channel mean and standard deviation of the posterior means over
training clips go into the VAE config (``latents_mean``/``latents_std``), which ``WanGenerator.decode`` and
``WanPipeline`` use, so the latents the T2V model learns are about unit variance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from drf.device import resolve_device
from drf.models.tiny import preset
from drf.toyworld import oracle
from drf.toyworld.alignment import alignment_summary, found_by
from drf.toyworld.assets import GENERATOR_DIR, TRAIN_STATE_DIR
from drf.toyworld.scene import WORLD_FRAMES
from drf.toyworld.train.data import Clips, clips
from drf.toyworld.train.loop import Clock, TrainState, log, lr_at, set_lr, setup


@dataclass
class VAETrainConfig:
    steps: int = field(default=3000, metadata={"help": "Optimizer steps."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation, batches and data split draws."})
    batch: int = field(default=4, metadata={"help": "Clips per step."})
    frames: int = field(default=WORLD_FRAMES, metadata={"help": "Frames per clip (4n+1)."})
    window: int = field(default=5, metadata={"help": "Frames per training window (4n+1) in the first phase."})
    full_clip_from: float = field(
        default=0.6,
        metadata={"help": "Share of the run (steps, or wall time under a cap) after which whole clips replace windows."},
    )
    lr: float = field(default=2e-3, metadata={"help": "Peak learning rate (warm-up then cosine)."})
    kl_weight: float = field(default=1e-4, metadata={"help": "Weight of the per-element KL term."})
    edge_weight: float = field(
        default=1.0, metadata={"help": "Weight of the L1 loss on horizontal and vertical image gradients."}
    )
    object_weight: float = field(
        default=20.0,
        metadata={"help": "Extra loss weight of object pixels: objects are ~8 % of a frame, and an unweighted loss "
                          "is won by floor and sky while object colours wash out."},
    )
    sample_posterior: bool = field(
        default=False, metadata={"help": "Decode a posterior sample (else its mean, which trains faster)."}
    )
    train_clips: int = field(default=3000, metadata={"help": "Rendered training clips."})
    eval_clips: int = field(default=120, metadata={"help": "Held-out clips for the oracle gates and PSNR."})
    stats_clips: int = field(default=200, metadata={"help": "Training clips the latent statistics are taken over."})
    minutes: float = field(default=0.0, metadata={"help": "Stop after this wall time (0: no cap)."})
    threads: int = field(default=2, metadata={"help": "CPU threads (both cores of the 2-core machine by default)."})
    checkpoint_minutes: float = field(default=3.0, metadata={"help": "Minutes between saves of the training state."})
    init_from: str = field(
        default="", metadata={"help": "Start from this VAE directory's weights (continue a run), else from scratch."}
    )
    arch: dict[str, Any] = field(
        default_factory=lambda: dict(preset("wan-toyworld").vae), metadata={"help": "AutoencoderKLWan config."}
    )


def to_vae(frames: torch.Tensor) -> torch.Tensor:
    """frames [B,T,3,H,W] in [0,1] -> VAE input [B,3,T,H,W] in [-1,1]."""
    return frames.transpose(1, 2) * 2 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-video PSNR in dB of [B,...] tensors in [0,1]."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


@torch.no_grad()
def latent_stats(vae, video: torch.Tensor, device: torch.device, batch: int = 8) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means over ``video`` [N,T,3,H,W] uint8 (full clips)."""
    total = total_sq = 0.0
    count = 0
    for start in range(0, len(video), batch):
        x = to_vae(video[start : start + batch].float() / 255.0).to(device)
        mu = vae.encode(x).latent_dist.mode().double()
        total = total + mu.sum(dim=(0, 2, 3, 4))
        total_sq = total_sq + (mu**2).sum(dim=(0, 2, 3, 4))
        count += mu.numel() // mu.shape[1]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-8).sqrt()
    return [round(float(m), 5) for m in mean], [round(float(s), 5) for s in std]


@torch.no_grad()
def round_trips(vae, data: Clips, device: torch.device, batch: int = 8) -> torch.Tensor:
    """Encode (posterior mode) and decode every clip of ``data``: frames [N,T,3,H,W] in [0,1]."""
    out = []
    for start in range(0, len(data), batch):
        frames = data.frames(list(range(start, min(len(data), start + batch)))).to(device)
        out.append((vae(to_vae(frames)).sample.clamp(-1, 1).transpose(1, 2) * 0.5 + 0.5).cpu())
    return torch.cat(out)


def evaluate_vae(vae, data: Clips, device: torch.device) -> dict:
    """Held-out round trips judged by the oracle next to the renders themselves: alignment (every alignment question
    of each clip's prompt), the share of prompted objects found per colour and per shape, PSNR over whole frames and
    over object pixels."""
    recon = round_trips(vae, data, device)
    frames = data.frames(list(range(len(data))))
    render_facts = [oracle.analyze(v) for v in frames]
    trip_facts = [oracle.analyze(v) for v in recon]
    err = ((recon - frames) ** 2).mean(2)  # [N,T,H,W]
    object_mse = (err * data.objects).sum() / data.objects.sum().clamp_min(1)
    renders, trips = alignment_summary(render_facts, data.prompts), alignment_summary(trip_facts, data.prompts)
    return {
        "alignment_renders": renders["alignment"],
        "alignment_round_trips": trips["alignment"],
        "alignment_round_trips_se": trips["alignment_se"],
        "by_aspect_renders": renders["by_aspect"],
        "by_aspect_round_trips": trips["by_aspect"],
        **{
            f"found_by_{key}": {
                "renders": found_by(render_facts, data.prompts, key),
                "round_trips": found_by(trip_facts, data.prompts, key),
            }
            for key in ("color", "shape")
        },
        "psnr_db": round(float(psnr(recon, frames).mean()), 2),
        "psnr_min_db": round(float(psnr(recon, frames).min()), 2),
        "psnr_objects_db": round(float(-10 * torch.log10(object_mse.clamp_min(1e-10))), 2),
        "eval_clips": len(data),
    }


def object_weights(objects: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights [B,1,T,H,W]: 1 on floor and sky, ``1 + weight`` on objects and a one-pixel ring around
    them (edges carry the colour that bleeds); ``objects`` [B,T,H,W] bool."""
    grown = torch.nn.functional.max_pool2d(objects.float().flatten(0, 1)[:, None], 3, stride=1, padding=1)
    return 1.0 + weight * grown.view(objects.shape)[:, None]


def edge_l1(recon: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted L1 between the horizontal and vertical differences of neighbouring pixels of ``recon`` and ``target``
    [B,C,T,H,W]; ``weights`` [B,1,T,H,W] as for the pixel terms (each difference takes the larger of its two pixels'
    weights, so an object's outline counts as the object)."""
    total = recon.new_zeros(())
    for dim in (-1, -2):
        n = recon.shape[dim] - 1
        diff = recon.diff(dim=dim) - target.diff(dim=dim)
        w = torch.maximum(weights.narrow(dim, 0, n), weights.narrow(dim, 1, n))
        total = total + (w * diff.abs()).mean() / w.mean()
    return total


def train_vae(config: VAETrainConfig, root: Path, device: str = "auto") -> tuple[object, dict]:
    """Train, set latent statistics, save to ``root/generator/vae`` (diffusers layout); returns (vae, summary).

    Resumable: the training state is saved under ``root/.train/`` every ``checkpoint_minutes`` and picked up by the
    same command after an interruption.
    """
    from diffusers import AutoencoderKLWan

    dev = resolve_device(device)
    setup(config.seed, dev, config.threads)
    train = clips(config.train_clips, config.seed, "train", num_frames=config.frames)
    held_out = clips(config.eval_clips, config.seed + 1, "eval", num_frames=config.frames)
    if config.init_from:
        vae = AutoencoderKLWan.from_pretrained(config.init_from, dtype=torch.float32).to(dev).train()
    else:
        vae = AutoencoderKLWan(**config.arch).to(dev).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(config.seed)
    clock = Clock(config.minutes)
    state = TrainState(Path(root) / TRAIN_STATE_DIR / "vae.pt", {"vae": vae}, optimizer, gen, clock,
                       every_minutes=config.checkpoint_minutes)
    state.restore()
    frames_total = train.video.shape[1]
    while state.step < config.steps:
        step = state.step
        if clock.expired():
            log(f"time cap reached after {step} steps")
            break
        set_lr(optimizer, lr_at(step, clock.progress(step, config.steps), config.lr))
        index = torch.randint(len(train), (config.batch,), generator=gen)
        whole = clock.progress(step, config.steps) >= config.full_clip_from
        window = frames_total if whole else config.window
        start = int(torch.randint(frames_total - window + 1, (1,), generator=gen))
        frames = train.frames(index)[:, start : start + window]
        objects = train.objects[index][:, start : start + window]
        if torch.rand((), generator=gen) < 0.5:  # mirror: the VAE has no notion of left and right
            frames, objects = frames.flip(-1), objects.flip(-1)
        x = to_vae(frames).to(dev)
        weights = object_weights(objects, config.object_weight).to(dev)
        posterior = vae.encode(x).latent_dist
        z = posterior.sample() if config.sample_posterior else posterior.mode()
        recon = vae.decode(z).sample
        err = recon - x
        l1 = (weights * err.abs()).mean() / weights.mean()
        mse = (weights * err**2).mean() / weights.mean()
        edges = edge_l1(recon, x, weights)
        kl = 0.5 * (posterior.mean**2 + posterior.var - 1 - posterior.logvar).mean()
        loss = l1 + mse + config.edge_weight * edges + config.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        state.step += 1
        if step % 25 == 0:
            state.curve.append([step, round(loss.item(), 5), round(clock.elapsed, 1)])
        if step % 50 == 0:
            log(f"vae step {step} loss {loss.item():.4f} l1 {l1.item():.4f} edges {edges.item():.4f} "
                f"kl {kl.item():.2f} {clock.elapsed:.0f}s")
        state.save_if_due()
    vae.eval()
    mean, std = latent_stats(vae, train.video[: config.stats_clips], dev)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    metrics = evaluate_vae(vae, held_out, dev)
    train_seconds = round(clock.elapsed, 1)
    cpu_seconds = round(state.cpu_total(), 1)
    log(f"vae held-out: {metrics}")
    vae.to("cpu").save_pretrained(Path(root) / GENERATOR_DIR / "vae", safe_serialization=True)
    state.finish()
    summary = {
        "steps": state.step,
        "train_seconds": train_seconds,
        "cpu_seconds": cpu_seconds,
        "loss_curve": {"columns": ["step", "loss", "seconds"], "rows": state.curve},
        "metrics": {**metrics, "latents_std_mean": round(sum(std) / len(std), 4)},
        "config": asdict(config),
        "data": {"train_clips": len(train), "split": "train", "eval_split": "eval", "frames": config.frames, "size": 64},
    }
    return vae, summary
