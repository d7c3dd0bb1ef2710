"""Distil a latent geometry model from a teacher: latents of videos in, the teacher's geometry as labels.

In the toy world the teacher is exact (the renderer's depth, poses and object masks; ``drf.toyworld.train.lgm``) and
the latents come from encoding the rendered clips with the generator's VAE; with a real generator, decode or encode
videos, label them with a ``FoundationTeacher`` and call the same ``distill``. Labels are put in the model's units first (``labels_from``):
poses relative to frame 0, depths and translations divided by the median static depth of frame 0.
CPU-capable; uses CUDA when available.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.optimization import get_cosine_schedule_with_warmup
from torch import Tensor

from drf.device import resolve_device
from drf.geometry.camera import invert_pose
from drf.geometry.lgm import LatentGeometryModel
from drf.geometry.output import GeometryOutput
from drf.geometry.rewards import CAMERA_TARGETS, reprojection, rotation_vector, smoothness, trajectory_error


@dataclass
class DistillConfig:
    """One distillation run on toy-world clips."""

    steps: int = field(default=1800, metadata={"help": "Optimizer steps."})
    batch: int = field(default=16, metadata={"help": "Clips per step."})
    lr: float = field(default=3e-3, metadata={"help": "Peak learning rate (linear warm-up, cosine decay)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup: int = field(default=100, metadata={"help": "Warm-up steps."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation and batch order."})
    minutes: float = field(default=0.0, metadata={"help": "Stop after this wall time (0: no cap)."})
    threads: int = field(default=1, metadata={"help": "CPU threads (the machine is shared)."})
    log_every: int = field(default=100, metadata={"help": "Steps between log lines."})
    w_depth: float = field(default=1.0, metadata={"help": "Weight of the log-depth L1 loss (surface pixels)."})
    w_rotation: float = field(default=5.0, metadata={"help": "Weight of the geodesic rotation loss (radians)."})
    w_translation: float = field(default=5.0, metadata={"help": "Weight of the normalised translation L1 loss."})
    w_focal: float = field(default=0.1, metadata={"help": "Weight of the log-focal L1 loss."})
    w_static: float = field(default=0.2, metadata={"help": "Weight of the static-surface BCE loss."})


@dataclass
class GeometryLabels:
    """Teacher geometry in the LGM's units for ``B`` clips with ``N`` frames on an ``h x w`` grid.

    rel_c2w [B,N,4,4]: pose relative to frame 0, translation in units of ``scale``; depth [B,N,h,w] in units of
    ``scale``; surface [B,N,h,w] bool (depth is defined: not sky); static [B,N,h,w] float; focal [B]: focal length
    over grid height; scale [B]: the median static depth of frame 0 in the teacher's units.
    """

    rel_c2w: Tensor
    depth: Tensor
    surface: Tensor
    static: Tensor
    focal: Tensor
    scale: Tensor

    def __getitem__(self, idx: Any) -> GeometryLabels:
        return GeometryLabels(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return self.rel_c2w.shape[0]

    def to(self, device: torch.device | str) -> GeometryLabels:
        return GeometryLabels(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    @staticmethod
    def cat(parts: Sequence[GeometryLabels]) -> GeometryLabels:
        return GeometryLabels(*(torch.cat([getattr(p, f) for p in parts]) for f in GeometryLabels.__dataclass_fields__))

    def as_geometry(self) -> GeometryOutput:
        """The labels as a ``GeometryOutput`` (e.g. to score exact rewards on the same clips)."""
        b, n, h, w = self.depth.shape
        K = torch.zeros(b, n, 3, 3, dtype=self.depth.dtype, device=self.depth.device)
        K[..., 0, 0] = K[..., 1, 1] = (self.focal * h)[:, None]
        K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = w / 2, h / 2, 1.0
        return GeometryOutput(self.rel_c2w, self.depth, K, self.static)


def labels_from(geom: GeometryOutput, surface: Tensor | None = None) -> GeometryLabels:
    """Put a teacher's geometry in LGM units. ``surface`` [B,N,h,w] marks pixels with a depth (default: all)."""
    surface = torch.ones_like(geom.depth, dtype=torch.bool) if surface is None else surface
    static = geom.static if geom.static is not None else surface.to(geom.depth.dtype)
    keep0 = (static[:, 0] > 0.5) & surface[:, 0]
    keep0 = torch.where(keep0.flatten(1).any(1)[:, None, None], keep0, surface[:, 0])
    d0 = torch.where(keep0, geom.depth[:, 0], torch.full_like(geom.depth[:, 0], float("nan")))
    scale = d0.flatten(1).nanmedian(dim=1).values
    rel = invert_pose(geom.c2w[:, :1]) @ geom.c2w
    rel[..., :3, 3] = rel[..., :3, 3] / scale[:, None, None]
    h = geom.size[0]
    return GeometryLabels(
        rel_c2w=rel.float(),
        depth=(geom.depth / scale[:, None, None, None]).float(),
        surface=surface,
        static=(static * surface).float(),
        focal=(geom.intrinsics[:, 0, 1, 1] / h).float(),
        scale=scale.float(),
    )


# ---------------------------------------------------------------------------------------------------------------
# Toy-world data


def latent_frame_indices(num_frames: int = 17, temporal_scale: int = 4) -> list[int]:
    """Pixel frames that Wan's latent frames stand for: 0, 4, 8, ... (the first latent frame holds frame 0 alone)."""
    return list(range(0, num_frames, temporal_scale))


@torch.no_grad()
def encode_latents(vae: Any, frames: Tensor) -> Tensor:
    """frames [B,T,3,H,W] in [0,1] -> normalised latents [B,C,F,h,w], the space the generator denoises in (the
    inverse of ``WanGenerator.decode``'s ``z * std + mean``)."""
    param = next(vae.parameters())
    x = frames.to(param.device, param.dtype).transpose(1, 2) * 2 - 1
    mu = vae.encode(x).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean, dtype=mu.dtype, device=mu.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=mu.dtype, device=mu.device).view(1, -1, 1, 1, 1)
    return ((mu - mean) / std).float()


# ---------------------------------------------------------------------------------------------------------------
# Loss, evaluation, training


def distillation_loss(pred: GeometryOutput, labels: GeometryLabels, cfg: DistillConfig) -> tuple[Tensor, dict]:
    """Weighted sum of: log-depth L1 on surface pixels, rotation-matrix and translation L1 on frames >= 1,
    log-focal L1 and static BCE; returns the loss and its parts (floats) for logging."""
    surface = labels.surface.to(pred.depth.dtype)
    log_err = (pred.depth.clamp_min(1e-6).log() - labels.depth.clamp_min(1e-6).log()).abs()
    depth = (log_err * surface).sum() / surface.sum().clamp_min(1)
    # Geodesic angle (radians) of the residual rotation: the same scale as the normalised translations.
    residual = pred.c2w[:, 1:, :3, :3].transpose(-1, -2) @ labels.rel_c2w[:, 1:, :3, :3]
    rotation = rotation_vector(residual).norm(dim=-1).mean()
    translation = (pred.c2w[:, 1:, :3, 3] - labels.rel_c2w[:, 1:, :3, 3]).abs().mean()
    h = pred.size[0]
    focal = (pred.intrinsics[:, 0, 1, 1].log() - (labels.focal * h).log()).abs().mean()
    static = F.binary_cross_entropy(pred.static.clamp(1e-5, 1 - 1e-5), labels.static)
    parts = {"depth": depth, "rotation": rotation, "translation": translation, "focal": focal, "static": static}
    loss = (cfg.w_depth * depth + cfg.w_rotation * rotation + cfg.w_translation * translation
            + cfg.w_focal * focal + cfg.w_static * static)
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def _angle_deg(cos: Tensor) -> Tensor:
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1)))


@torch.no_grad()
def evaluate(
    model: LatentGeometryModel, latents: Tensor, labels: GeometryLabels,
    camera_motions: Sequence[str] | None = None, batch: int = 64,
) -> dict[str, float]:
    """Held-out errors of the LGM against its teacher, with trivial baselines for scale.

    rotation_deg: mean geodesic error of the frame-t pose relative to frame 0 (t >= 1); translation_dir_deg: mean angle
    between predicted and true translations where the camera moved > 2% of the scene scale; depth_abs_rel: mean
    |d - d*| / d* on surface pixels (model units, so scale errors count); depth_abs_rel_aligned: the same after a
    per-frame median rescale; camera_motion_accuracy: how often the named motion with the lowest trajectory error on
    the LGM's geometry is the true one. Baselines: identity rotation, and the mean training-free guess of 1 for depth.
    """
    device = next(model.parameters()).device
    preds = [model(latents[i : i + batch].to(device)).to("cpu") for i in range(0, len(latents), batch)]
    pred = GeometryOutput.cat(preds)
    rel_rot = pred.c2w[:, 1:, :3, :3].transpose(-1, -2) @ labels.rel_c2w[:, 1:, :3, :3]
    rot_err = _angle_deg((rel_rot.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2)
    identity_err = _angle_deg((labels.rel_c2w[:, 1:, :3, :3].diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2)
    t_pred, t_true = pred.c2w[:, 1:, :3, 3], labels.rel_c2w[:, 1:, :3, 3]
    moved = t_true.norm(dim=-1) > 0.02
    cos = (F.normalize(t_pred, dim=-1) * F.normalize(t_true, dim=-1)).sum(-1)
    surface = labels.surface
    rel = (pred.depth - labels.depth).abs() / labels.depth
    ratio = torch.where(surface, labels.depth / pred.depth, torch.full_like(pred.depth, float("nan")))
    align = ratio.flatten(2).nanmedian(dim=2).values[..., None, None]
    rel_aligned = (pred.depth * align - labels.depth).abs() / labels.depth
    metrics = {
        "rotation_deg": float(rot_err.mean()),
        "rotation_deg_identity_baseline": float(identity_err.mean()),
        "translation_dir_deg": float(_angle_deg(cos)[moved].mean()) if moved.any() else float("nan"),
        "depth_abs_rel": float(rel[surface].mean()),
        "depth_abs_rel_aligned": float(rel_aligned[surface].mean()),
        "depth_abs_rel_constant_baseline": float(((1 - labels.depth).abs() / labels.depth)[surface].mean()),
        "focal_rel": float(((pred.intrinsics[:, 0, 1, 1] / pred.size[0] - labels.focal).abs() / labels.focal).mean()),
        "static_accuracy": float(((pred.static > 0.5) == (labels.static > 0.5)).float().mean()),
    }
    if camera_motions is not None:
        names = list(CAMERA_TARGETS)
        errors = torch.stack([trajectory_error(pred, [n] * pred.batch_size) for n in names], 1)
        guess = [names[i] for i in errors.argmin(1).tolist()]
        metrics["camera_motion_accuracy"] = sum(g == m for g, m in zip(guess, camera_motions)) / len(guess)
    return metrics


def distill(
    model: LatentGeometryModel,
    latents: Tensor,
    labels: GeometryLabels,
    cfg: DistillConfig | None = None,
    device: str | torch.device | None = None,
    log: Callable[[str], None] | None = print,
) -> list[dict[str, float]]:
    """Train ``model`` in place on (latents [B,C,F,h,w], labels) with AdamW; returns the logged history (step, loss
    and its parts averaged over each logging interval)."""
    cfg = cfg or DistillConfig()
    device = resolve_device(device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = get_cosine_schedule_with_warmup(opt, cfg.warmup, cfg.steps)
    history: list[dict[str, float]] = []
    running: dict[str, float] = {}
    count = 0
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(latents), (min(cfg.batch, len(latents)),), generator=gen)
        loss, parts = distillation_loss(model(latents[idx].to(device)), labels[idx].to(device), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            running[k] = running.get(k, 0.0) + v
        count += 1
        out_of_time = cfg.minutes > 0 and time.perf_counter() - start > 60 * cfg.minutes
        if step % cfg.log_every == 0 or step == cfg.steps or out_of_time:
            entry = {"step": step, **{k: v / count for k, v in running.items()}, "seconds": time.perf_counter() - start}
            history.append(entry)
            if log is not None:
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
            running, count = {}, 0
        if out_of_time:
            break
    model.eval()
    return history


@torch.no_grad()
def evaluate_rewards(model: LatentGeometryModel, latents: Tensor, labels: GeometryLabels) -> dict[str, float]:
    """Whether rewards on the LGM's geometry see what they should, on held-out clips.

    Smoothness on LGM vs exact geometry (means and Pearson correlation), and on clips with latent frames F//2 and
    F//2 + 1 swapped (a jerky camera: frames 2 and 3 of five, 1 and 2 of three); reprojection on clean clips and on clips whose latent frame 2 comes from another clip
    (a cut, which no single 3D scene explains). ``*_detected``: share of clips scoring lower when corrupted.
    """
    def lgm(x: Tensor) -> GeometryOutput:
        return GeometryOutput.cat([model(x[i : i + 64]) for i in range(0, len(x), 64)])

    mid = latents.shape[2] // 2
    swapped = latents.clone()
    swapped[:, :, [mid, mid + 1]] = latents[:, :, [mid + 1, mid]]
    cut = latents.clone()
    cut[:, :, 2] = latents.roll(1, dims=0)[:, :, 2]
    pred = lgm(latents)
    smooth, smooth_exact, smooth_swapped = smoothness(pred), smoothness(labels.as_geometry()), smoothness(lgm(swapped))
    reproj, reproj_cut = reprojection(pred), reprojection(lgm(cut))
    return {
        "reward_smoothness_lgm": float(smooth.mean()),
        "reward_smoothness_exact": float(smooth_exact.mean()),
        "reward_smoothness_corr": float(torch.corrcoef(torch.stack([smooth, smooth_exact]))[0, 1]),
        "reward_smoothness_swapped_frames": float(smooth_swapped.mean()),
        "reward_smoothness_swap_detected": float((smooth_swapped < smooth).float().mean()),
        "reward_reprojection_lgm": float(reproj.mean()),
        "reward_reprojection_exact": float(reprojection(labels.as_geometry()).mean()),
        "reward_reprojection_cut": float(reproj_cut.mean()),
        "reward_reprojection_cut_detected": float((reproj_cut < reproj).float().mean()),
    }
