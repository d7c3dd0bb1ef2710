"""Geometry rewards: is the camera path smooth, is the video one consistent 3D scene, does the camera do what the
prompt asked — scored from a ``GeometryOutput`` (exact renders, a teacher, or the latent geometry model).

Every score is per video and invariant to the global scale and to rigid changes of the world frame, because
geometry estimated from a video has neither a metric scale nor a canonical world. Scores lie in [0,1] (1 = best).

A camera that never moves is trivially smooth and trivially consistent, so these rewards alone pay a generator for
freezing the camera. ``dynamic_degree`` makes that visible: log it, and pair smoothness with the trajectory reward
(or a dynamic-degree floor) whenever the prompt asks for camera motion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from drf.errors import InputError
from drf.geometry.camera import invert_pose, project_points, unproject_depth
from drf.geometry.output import GeometryOutput
from drf.rewards import RewardOutput


@dataclass
class GeometryRewardConfig:
    """Knobs of the geometry rewards; defaults are calibrated on toy-world v2 renders and the shipped toy LGM's
    geometry of held-out clips (see docs/geometry.md, "Calibration")."""

    smooth_k_translation: float = field(
        default=0.5,
        metadata={"help": "Smoothness = exp(-jerk / speed); weight of the translation part of the jerk (median "
                  "depths per frame step)."},
    )
    smooth_k_rotation: float = field(default=0.5, metadata={"help": "Weight of the rotation part (radians per step)."})
    speed_floor: float = field(
        default=0.01,
        metadata={"help": "Static-camera guard: per-frame camera speed below this fraction of the median depth counts "
                  "as still; smoothness measures jerk against this floor (plus the angular one) instead of the "
                  "near-zero speed."},
    )
    angular_speed_floor_deg: float = field(
        default=0.5, metadata={"help": "Per-frame rotation (degrees) below which the camera counts as not turning."}
    )
    reproj_tau: float = field(
        default=0.05, metadata={"help": "Pair reward = exp(-mean relative depth error / tau)."}
    )
    reproj_error_cap: float = field(
        default=1.0, metadata={"help": "Per-pixel relative errors are clipped here so a few pixels cannot dominate."}
    )
    reproj_occlusion_tol: float = field(
        default=0.05,
        metadata={"help": "A reprojected point farther than depth_i * (1 + tol) is hidden in frame i: not compared."},
    )
    reproj_edge_tol: float = field(
        default=0.1,
        metadata={"help": "Pixels whose inverse depth bends more than this (relative second difference) are depth "
                  "edges, where bilinear sampling mixes surfaces; they are not compared."},
    )
    reproj_window: int = field(
        default=0, metadata={"help": "Compare frames at most this far apart (0: all ordered pairs)."}
    )
    reproj_worst_fraction: float = field(
        default=0.25, metadata={"help": "Video reward = mean of the worst ceil(fraction * pairs) pair rewards."}
    )
    reproj_min_coverage: float = field(
        default=0.02, metadata={"help": "Pairs comparing fewer than this fraction of pixels are skipped."}
    )
    trajectory_rotation_scale_deg: float = field(
        default=3.0, metadata={"help": "Rotation (degrees, whole clip) at which a rotation counts as clearly present."}
    )
    trajectory_translation_scale: float = field(
        default=0.1,
        metadata={"help": "Translation (fraction of median depth, whole clip) at which it counts as clearly present."},
    )
    dynamic_scale: float = field(
        default=0.05,
        metadata={"help": "Dynamic degree = 1 - exp(-motion / scale); motion = path length / median depth + radians."},
    )


# ---------------------------------------------------------------------------------------------------------------
# Camera-path primitives


def rotation_vector(rot: Tensor) -> Tensor:
    """Axis-angle vectors [...,3] of rotations [...,3,3] (angle in radians); accurate below ~170 degrees, which covers
    frame-to-frame and whole-clip camera turns."""
    skew = torch.stack(
        [rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0], rot[..., 1, 0] - rot[..., 0, 1]], -1
    ) / 2  # sin(angle) * axis
    cos = (rot.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    sin = (skew.square().sum(-1) + 1e-20).sqrt()
    angle = torch.atan2(sin, cos)
    return skew * (angle / sin)[..., None]


def body_steps(c2w: Tensor) -> tuple[Tensor, Tensor]:
    """Frame-to-frame camera motion in the moving camera's own axes: translation [B,N-1,3] and rotation vectors
    [B,N-1,3] of ``w2c_t @ c2w_{t+1}``. Own axes make them independent of the world frame, and constant for any
    constant-twist move (straight line, pan, look-at orbit, helix)."""
    step = invert_pose(c2w[:, :-1]) @ c2w[:, 1:]
    return step[..., :3, 3], rotation_vector(step[..., :3, :3])


def scene_scale(geom: GeometryOutput) -> Tensor:
    """Median depth per video [B] over static pixels (all pixels when there is no mask): the unit that makes camera
    speeds comparable across scales."""
    depth = geom.depth.flatten(1)
    if geom.static is None:
        return depth.median(dim=1).values
    keep = geom.static.flatten(1) > 0.5
    masked = torch.where(keep, depth, torch.full_like(depth, float("nan")))
    fallback = depth.median(dim=1).values
    med = masked.nanmedian(dim=1).values
    return torch.where(keep.any(1), med, fallback)


def _need_frames(geom: GeometryOutput, count: int, what: str) -> None:
    if geom.num_frames < count:
        raise InputError(f"{what} needs at least {count} frames per video, got {geom.num_frames}")


# ---------------------------------------------------------------------------------------------------------------
# Smoothness and dynamic degree


def smoothness(geom: GeometryOutput, config: GeometryRewardConfig | None = None) -> Tensor:
    """Camera-motion smoothness per video [B] in (0,1]; exactly 1 for any constant-twist path.

    With body-frame steps v_t (translation, in median depths d) and w_t (rotation vector, radians), accelerations
    a_t = v_{t+1} - v_t and alpha_t = w_{t+1} - w_t: jerk J = mean(k_t |a_t| / d + k_r |alpha_t|), speed
    S = mean(|v_t| / d + |w_t|) and smoothness = exp(-J / max(S, floor)). Translation and rotation share one motion
    scale (a turn of theta radians moves the scene at the median depth by theta d), so a pose estimator's small
    spurious translation on a pan is weighed against the pan's turn, not against its own near-zero size (which made a
    frozen clip beat a smooth pan). Dividing by speed makes it scale-invariant; body-frame steps make it invariant to
    rigid world changes. Ratios depend on the frame rate (latent frames see four pixel frames of jitter per step).

    Static-camera guard: below the speed floors (``speed_floor`` + ``angular_speed_floor_deg``), jerk is measured
    against the floor rather than the near-zero speed, so a still camera scores 1 instead of dividing noise by noise,
    while a shaking "still" camera is still penalised. A trainer must not read 1 as success on its own: a frozen
    camera also scores 1 — check ``dynamic_degree``.
    """
    cfg = config or GeometryRewardConfig()
    _need_frames(geom, 3, "smoothness")
    v, w = body_steps(geom.c2w)
    scale = scene_scale(geom)[:, None]
    a, alpha = (v[:, 1:] - v[:, :-1]).norm(dim=-1) / scale, (w[:, 1:] - w[:, :-1]).norm(dim=-1)
    jerk = (cfg.smooth_k_translation * a + cfg.smooth_k_rotation * alpha).mean(1)
    speed = (v.norm(dim=-1) / scale + w.norm(dim=-1)).mean(1)
    floor = cfg.speed_floor + math.radians(cfg.angular_speed_floor_deg)
    return torch.exp(-jerk / speed.clamp_min(floor))


def is_static_camera(geom: GeometryOutput, config: GeometryRewardConfig | None = None) -> Tensor:
    """[B] bool: the camera moves and turns less per frame than the static-camera floors."""
    cfg = config or GeometryRewardConfig()
    _need_frames(geom, 2, "is_static_camera")
    v, w = body_steps(geom.c2w)
    slow = v.norm(dim=-1).mean(1) < cfg.speed_floor * scene_scale(geom)
    return slow & (w.norm(dim=-1).mean(1) < math.radians(cfg.angular_speed_floor_deg))


def dynamic_degree(geom: GeometryOutput, config: GeometryRewardConfig | None = None) -> Tensor:
    """How much the camera moves [B] in [0,1): 1 - exp(-(path length / median depth + total turn in radians) / scale).

    A logging figure, not a reward: a generator that learns to freeze the camera shows up here as a fall towards 0.
    """
    cfg = config or GeometryRewardConfig()
    _need_frames(geom, 2, "dynamic_degree")
    v, w = body_steps(geom.c2w)
    motion = v.norm(dim=-1).sum(1) / scene_scale(geom) + w.norm(dim=-1).sum(1)
    return 1 - torch.exp(-motion / cfg.dynamic_scale)


# ---------------------------------------------------------------------------------------------------------------
# Reprojection consistency


def _pairs(num_frames: int, window: int) -> list[tuple[int, int]]:
    return [
        (i, j) for i in range(num_frames) for j in range(num_frames)
        if i != j and (window <= 0 or abs(i - j) <= window)
    ]


def _comparable(geom: GeometryOutput, edge_tol: float) -> Tensor:
    """[B,N,h,w] bool: pixels whose 3x3 neighbourhood is static and free of depth edges, so any bilinear sample
    whose nearest pixel is one of them mixes only one smooth surface (inverse depth is exact on planes)."""
    inv = 1.0 / geom.depth.clamp_min(1e-6)
    bend = torch.zeros_like(inv)
    bend[..., :, 1:-1] = (inv[..., :, 2:] + inv[..., :, :-2] - 2 * inv[..., :, 1:-1]).abs()
    vertical = (inv[..., 2:, :] + inv[..., :-2, :] - 2 * inv[..., 1:-1, :]).abs()
    bend[..., 1:-1, :] = torch.maximum(bend[..., 1:-1, :], vertical)
    good = (bend <= edge_tol * inv).to(inv.dtype)
    if geom.static is not None:
        good = good * (geom.static > 0.5).to(inv.dtype)
    batch, frames, h, w = good.shape
    eroded = -F.max_pool2d(-good.reshape(batch * frames, 1, h, w), 3, stride=1, padding=1)
    return eroded.reshape(batch, frames, h, w) > 0.5


def reprojection_pair_errors(
    geom: GeometryOutput, config: GeometryRewardConfig | None = None
) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
    """Mean relative depth error per ordered pair (i, j) [B,P], its coverage (fraction of frame-j pixels compared)
    [B,P], and the pairs.

    Frame j's pixels are unprojected with depth_j, K_j, c2w_j, projected into frame i, and their depth z is compared
    with frame i's depth sampled there (bilinear in inverse depth): error |z - d_i| / d_i. Compared: static pixels of
    j that land inside i on static, edge-free surface and are not hidden there (z <= d_i (1 + occlusion tol)).
    """
    cfg = config or GeometryRewardConfig()
    _need_frames(geom, 2, "reprojection")
    batch, frames = geom.batch_size, geom.num_frames
    h, w = geom.size
    depth = geom.depth
    comparable = _comparable(geom, cfg.reproj_edge_tol)
    source = geom.static > 0.5 if geom.static is not None else torch.ones_like(depth, dtype=torch.bool)
    inv = 1.0 / depth.clamp_min(1e-6)
    pairs = _pairs(frames, cfg.reproj_window)
    errors, coverage = [], []
    for i, j in pairs:
        points = unproject_depth(depth[:, j], geom.intrinsics[:, j], geom.c2w[:, j]).reshape(batch, -1, 3)
        uv, z = project_points(points, geom.intrinsics[:, i], geom.c2w[:, i])  # [B,P,2], [B,P]
        grid = torch.stack([2 * uv[..., 0] / w - 1, 2 * uv[..., 1] / h - 1], -1)[:, None]  # [B,1,P,2]
        grid = torch.nan_to_num(grid, nan=-2.0, posinf=-2.0, neginf=-2.0)
        inv_i = F.grid_sample(inv[:, i, None], grid, mode="bilinear", align_corners=False)[:, 0, 0]
        ok_i = F.grid_sample(comparable[:, i, None].to(depth.dtype), grid, mode="nearest", align_corners=False)
        d_i = 1.0 / inv_i.clamp_min(1e-6)
        inside = (uv[..., 0] >= 0.5) & (uv[..., 0] <= w - 0.5) & (uv[..., 1] >= 0.5) & (uv[..., 1] <= h - 0.5)
        keep = inside & (z > 0) & (ok_i[:, 0, 0] > 0.5) & source[:, j].flatten(1)
        keep = keep & (z <= d_i * (1 + cfg.reproj_occlusion_tol))
        err = ((z - d_i).abs() / d_i).clamp(max=cfg.reproj_error_cap)
        weight = keep.to(depth.dtype)
        count = weight.sum(1)
        errors.append((err * weight).sum(1) / count.clamp_min(1))
        coverage.append(count / (h * w))
    return torch.stack(errors, 1), torch.stack(coverage, 1), pairs


def reprojection(geom: GeometryOutput, config: GeometryRewardConfig | None = None) -> Tensor:
    """Reprojection consistency per video [B] in [0,1]: pair reward exp(-error / tau), averaged over the worst
    ``ceil(worst_fraction * pairs)`` pairs with enough coverage (worst views, so one inconsistent frame counts).

    A video with no pair to compare scores 0: nothing checkable is not evidence of consistency.
    """
    cfg = config or GeometryRewardConfig()
    errors, coverage, pairs = reprojection_pair_errors(geom, cfg)
    rewards = torch.exp(-errors / cfg.reproj_tau)
    usable = coverage >= cfg.reproj_min_coverage
    k = max(1, math.ceil(cfg.reproj_worst_fraction * len(pairs)))
    ranked = torch.where(usable, rewards, torch.full_like(rewards, float("inf"))).sort(dim=1).values[:, :k]
    taken = torch.isfinite(ranked)
    total = torch.where(taken, ranked, 0.0).sum(1)
    count = taken.sum(1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))


# ---------------------------------------------------------------------------------------------------------------
# Trajectory against a named camera motion

# Whole-clip motion of each named camera move in the frame-0 camera's axes (OpenCV: x right, y down, z forward):
# (rotation axis, translation direction); None means that part should be absent. Camera-up is -y.
CAMERA_TARGETS: dict[str, tuple[tuple[float, float, float] | None, tuple[float, float, float] | None]] = {
    "static": (None, None),
    "pan_left": ((0.0, -1.0, 0.0), None),
    "pan_right": ((0.0, 1.0, 0.0), None),
    "dolly_in": (None, (0.0, 0.0, 1.0)),
    "dolly_out": (None, (0.0, 0.0, -1.0)),
    "orbit_left": ((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0)),
    "orbit_right": ((0.0, -1.0, 0.0), (1.0, 0.0, 0.0)),
}


def camera_target(name: str) -> str:
    """Canonical camera-motion name ("Pan left", "pan-left", "pan_left" -> "pan_left")."""
    key = "_".join(name.strip().lower().replace("-", " ").split())
    key = {"still": "static", "none": "static"}.get(key, key)
    if key not in CAMERA_TARGETS:
        raise InputError(f"unknown camera motion {name!r}; known: {', '.join(CAMERA_TARGETS)}")
    return key


def _part_error(vec: Tensor, magnitude: Tensor, scale: float, direction: tuple[float, float, float] | None) -> Tensor:
    """0 (as asked) .. 1 (opposite or missing): with a direction, 1 - agreement * presence; without, presence."""
    presence = 1 - torch.exp(-magnitude / scale)
    if direction is None:
        return presence
    target = torch.tensor(direction, dtype=vec.dtype, device=vec.device)
    cos = (vec @ target) / magnitude.clamp_min(1e-12)
    return 1 - 0.5 * (1 + cos) * presence


def trajectory_error(
    geom: GeometryOutput, motions: Sequence[str], config: GeometryRewardConfig | None = None
) -> Tensor:
    """Camera-trajectory error [B] in [0,1] against the named motion of each video (0: as asked).

    The whole-clip relative pose w2c_0 @ c2w_last gives a rotation vector and a translation in frame-0 camera axes;
    each part is scored against ``CAMERA_TARGETS``: the direction's agreement times its presence (magnitude over the
    config's scale: degrees for rotation, fraction of median depth for translation) when the move asks for it, its
    presence when the move forbids it; the error is the mean of the two parts.
    """
    cfg = config or GeometryRewardConfig()
    _need_frames(geom, 2, "trajectory_error")
    if len(motions) != geom.batch_size:
        raise InputError(f"trajectory_error got {len(motions)} camera motions for {geom.batch_size} videos")
    rel = invert_pose(geom.c2w[:, 0]) @ geom.c2w[:, -1]
    rot_vec = rotation_vector(rel[:, :3, :3])
    trans = rel[:, :3, 3] / scene_scale(geom)[:, None]
    out = []
    for b, name in enumerate(motions):
        axis, direction = CAMERA_TARGETS[camera_target(name)]
        e_rot = _part_error(rot_vec[b], rot_vec[b].norm(), math.radians(cfg.trajectory_rotation_scale_deg), axis)
        e_trans = _part_error(trans[b], trans[b].norm(), cfg.trajectory_translation_scale, direction)
        out.append(0.5 * (e_rot + e_trans))
    return torch.stack(out)


def trajectory_score(
    geom: GeometryOutput,
    camera_motions: Sequence[str | None],
    config: GeometryRewardConfig | None = None,
    absent: float = 0.0,
) -> Tensor:
    """1 - trajectory error per video [B] against the camera move its prompt names; ``absent`` where it names none."""
    cfg = config or GeometryRewardConfig()
    named = [b for b, m in enumerate(camera_motions) if m is not None]
    score = torch.full((geom.batch_size,), float(absent), dtype=geom.c2w.dtype, device=geom.c2w.device)
    if not named:
        return score
    sub = GeometryOutput(
        geom.c2w[named], geom.depth[named], geom.intrinsics[named],
        None if geom.static is None else geom.static[named],
    )  # fmt: skip
    rows = torch.tensor(named, device=score.device)
    return score.index_put((rows,), 1 - trajectory_error(sub, [camera_motions[b] for b in named], cfg))


# ---------------------------------------------------------------------------------------------------------------
# As a RewardOutput

REWARD_IDS = ("geo_smoothness", "geo_reprojection", "geo_trajectory")


def geometry_rewards(
    geom: GeometryOutput,
    camera_motions: Sequence[str | None] | None = None,
    *,
    config: GeometryRewardConfig | None = None,
    weights: dict[str, float] | None = None,
    aspect: str = "geometry",
) -> RewardOutput:
    """Smoothness, reprojection and (where a video names a camera motion) 1 - trajectory error, as one
    ``RewardOutput`` under ``aspect`` that ``drf.rewards.combine`` can join with critic rewards.

    ``camera_motions[b]``: a name from ``CAMERA_TARGETS`` ("pan_left", "dolly in", ...) or None when the prompt names
    no camera motion (the trajectory column is then masked out). ``weights`` maps reward ids to question weights.
    Extras (logged, never aggregated): ``geo_dynamic_degree`` [B] and ``geo_static_camera`` [B] bool.
    """
    cfg = config or GeometryRewardConfig()
    batch = geom.batch_size
    motions = list(camera_motions) if camera_motions is not None else [None] * batch
    if len(motions) != batch:
        raise InputError(f"geometry_rewards got {len(motions)} camera motions for {batch} videos")
    unknown = [w for w in (weights or {}) if w not in REWARD_IDS]
    if unknown:
        raise InputError(f"geometry_rewards: unknown weight key {unknown[0]!r}; known: {', '.join(REWARD_IDS)}")
    smooth = smoothness(geom, cfg)
    reproj = reprojection(geom, cfg)
    traj = trajectory_score(geom, motions, cfg, absent=1.0)  # 1 is padding where no motion is named (masked out)
    per_question = torch.stack([smooth, reproj, traj], 1)
    mask = torch.ones(batch, 3, dtype=torch.bool, device=per_question.device)
    mask[:, 2] = torch.tensor([m is not None for m in motions], dtype=torch.bool, device=mask.device)
    w = [float((weights or {}).get(rid, 1.0)) for rid in REWARD_IDS]
    ids = [list(REWARD_IDS) if m is not None else list(REWARD_IDS[:2]) for m in motions]
    return RewardOutput(
        per_question=per_question,
        mask=mask,
        question_ids=ids,
        aspects=[[aspect] * len(row) for row in ids],
        weights=torch.tensor([w] * batch, dtype=torch.float32, device=per_question.device),
        extras={
            "geo_dynamic_degree": dynamic_degree(geom, cfg).detach(),
            "geo_static_camera": is_static_camera(geom, cfg),
        },
    )
