"""A small torch ray-caster for toy-world scenes: RGB, exact z-depth, per-object masks and camera poses.

Every pixel ray is intersected analytically with the floor plane (y = 0, checkered), spheres, cubes (slab test in
the cube's yawed frame) and vertical capped cylinders, batched over all pixels of all frames. Shading is Lambert with
one directional light plus ambient and no shadows, so an object's pixels keep its exact hue and saturation — that is
what the oracle's colour masks rely on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from drf.errors import InputError
from drf.geometry.camera import camera_rays, intrinsics_from_fov
from drf.toyworld.scene import COLORS, FLOOR, WORLD_FRAMES, Scene

FAR = 100.0  # depth reported for sky pixels (valid = False there)
LIGHT_DIR = (0.35, 1.0, -0.55)  # towards the light, world axes
AMBIENT, DIFFUSE = 0.4, 0.6
SKY_HORIZON = (0.80, 0.84, 0.90)
SKY_ZENITH = (0.58, 0.68, 0.86)
CHECKER_SIZE = 1.5  # world units per floor tile: about 14 px wide at the objects' depth, readable at 64 px
_EPS = 1e-6


@dataclass
class RenderOutput:
    """A rendered video with its exact geometry.

    rgb [T,3,H,W] in [0,1]; depth [T,H,W] z-depth (FAR where ``valid`` is False: sky); valid [T,H,W] bool;
    c2w [T,4,4] OpenCV camera-to-world; K [T,3,3]; masks [T,n_obj,H,W] bool, the pixels where each object is the first
    hit (from the pixel-centre ray).
    """

    rgb: Tensor
    depth: Tensor
    valid: Tensor
    c2w: Tensor
    K: Tensor
    masks: Tensor


def _hit_sphere(o: Tensor, d: Tensor, center: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    """Nearest hit t [T,P] (inf on a miss) and unit normals [T,P,3]; o [T,1,3], d [T,P,3], center [T,1,3]."""
    oc = o - center
    a = (d * d).sum(-1)
    b = 2.0 * (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - radius**2
    disc = b * b - 4 * a * c
    t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
    t = torch.where((disc >= 0) & (t > _EPS), t, torch.full_like(t, float("inf")))
    normal = F.normalize(o + t.clamp(max=FAR)[..., None] * d - center, dim=-1)
    return t, normal


def _hit_cube(o: Tensor, d: Tensor, center: Tensor, half: float, yaw: float) -> tuple[Tensor, Tensor]:
    """Slab test in the cube's frame (rotated by ``yaw`` about y)."""
    c, s = torch.cos(torch.tensor(yaw, dtype=d.dtype)), torch.sin(torch.tensor(yaw, dtype=d.dtype))
    # World -> local: inverse yaw rotation on x, z.
    def to_local(v: Tensor) -> Tensor:
        return torch.stack([c * v[..., 0] - s * v[..., 2], v[..., 1], s * v[..., 0] + c * v[..., 2]], -1)

    ol, dl = to_local(o - center), to_local(d)
    dl = torch.where(dl.abs() < 1e-12, torch.full_like(dl, 1e-12), dl)
    t1, t2 = (-half - ol) / dl, (half - ol) / dl
    tnear, tfar = torch.minimum(t1, t2), torch.maximum(t1, t2)
    tmin, axis = tnear.max(-1)
    tmax = tfar.min(-1).values
    hit = (tmax >= tmin) & (tmin > _EPS)
    t = torch.where(hit, tmin, torch.full_like(tmin, float("inf")))
    normal_local = -torch.sign(dl) * F.one_hot(axis, 3).to(dl.dtype)
    nx, ny, nz = normal_local.unbind(-1)
    normal = torch.stack([c * nx + s * nz, ny, -s * nx + c * nz], -1)  # local -> world
    return t, normal


def _hit_cylinder(o: Tensor, d: Tensor, base: Tensor, radius: float, height: float) -> tuple[Tensor, Tensor]:
    """Vertical cylinder standing on ``base`` with a top cap (the bottom rests on the floor and is never seen)."""
    inf = float("inf")
    ob = o - base
    a = d[..., 0] ** 2 + d[..., 2] ** 2
    b = 2 * (ob[..., 0] * d[..., 0] + ob[..., 2] * d[..., 2])
    c = ob[..., 0] ** 2 + ob[..., 2] ** 2 - radius**2
    disc = b * b - 4 * a * c
    t_side = (-b - disc.clamp_min(0).sqrt()) / (2 * a).clamp_min(1e-12)
    y_side = ob[..., 1] + t_side * d[..., 1]
    side_ok = (disc >= 0) & (t_side > _EPS) & (y_side >= 0) & (y_side <= height)
    t_side = torch.where(side_ok, t_side, torch.full_like(t_side, inf))
    dy = torch.where(d[..., 1].abs() < 1e-12, torch.full_like(d[..., 1], 1e-12), d[..., 1])
    t_top = (height - ob[..., 1]) / dy
    px, pz = ob[..., 0] + t_top * d[..., 0], ob[..., 2] + t_top * d[..., 2]
    top_ok = (t_top > _EPS) & (px**2 + pz**2 <= radius**2)
    t_top = torch.where(top_ok, t_top, torch.full_like(t_top, inf))
    t = torch.minimum(t_side, t_top)
    p = ob + t_side.clamp(max=FAR)[..., None] * d
    side_normal = F.normalize(torch.stack([p[..., 0], torch.zeros_like(p[..., 0]), p[..., 2]], -1), dim=-1)
    up = torch.zeros_like(side_normal)
    up[..., 1] = 1.0
    normal = torch.where((t_top <= t_side)[..., None], up, side_normal)
    return t, normal


def _trace(
    scene: Scene, origins: Tensor, dirs: Tensor, num_frames: int, pixel_angle: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Colour [T,P,3], z-depth [T,P] and hit id [T,P] (-1 sky, 0 floor, k+1 object k) for rays o [T,3], d [T,P,3].

    ``pixel_angle`` (radians per output pixel) sets how far the checker stays sharp before it fades to grey.
    """
    dtype = dirs.dtype
    o = origins[:, None, :]
    inf = torch.full(dirs.shape[:-1], float("inf"), dtype=dtype)
    # Floor.
    t_floor = torch.where(dirs[..., 1] < -1e-9, -o[..., 1] / dirs[..., 1].clamp(max=-1e-9), inf)
    t_floor = torch.where(t_floor < FAR, t_floor, inf)
    ts, normals = [t_floor], [None]
    bases = torch.stack([ob.base_positions(num_frames) for ob in scene.objects], 1).to(dtype) if scene.objects else None
    for k, ob in enumerate(scene.objects):
        base = bases[:, k][:, None, :]
        center = base + torch.tensor([0.0, ob.extent, 0.0], dtype=dtype)
        if ob.shape == "sphere":
            t, n = _hit_sphere(o, dirs, center, ob.extent)
        elif ob.shape == "cube":
            t, n = _hit_cube(o, dirs, center, ob.extent, ob.yaw)
        else:
            t, n = _hit_cylinder(o, dirs, base, ob.extent, ob.height)
        ts.append(t)
        normals.append(n)
    t_all = torch.stack(ts, 0)  # [1+n,T,P]
    t_min, hit = t_all.min(0)
    sky = torch.isinf(t_min)
    hit = torch.where(sky, torch.full_like(hit, -1), hit)
    # Sky: gradient by elevation of the ray direction (world-anchored, so it does not slide under camera motion).
    elev = F.normalize(dirs, dim=-1)[..., 1].clamp(0, 1).sqrt()[..., None]
    color = torch.tensor(SKY_HORIZON, dtype=dtype) * (1 - elev) + torch.tensor(SKY_ZENITH, dtype=dtype) * elev
    # Floor: checker, its contrast faded where a pixel covers more than about half a tile (limits aliasing).
    p = o + t_floor.clamp(max=FAR)[..., None] * dirs
    parity = (torch.floor(p[..., 0] / CHECKER_SIZE) + torch.floor(p[..., 2] / CHECKER_SIZE)).remainder(2)[..., None]
    dark, light = (torch.tensor(c, dtype=dtype) for c in FLOOR)
    footprint = t_floor.clamp(max=FAR) * pixel_angle / (-dirs[..., 1] / dirs.norm(dim=-1)).clamp_min(1e-3)
    contrast = (1.5 - 2.0 * footprint / CHECKER_SIZE).clamp(0, 1)[..., None]
    mean = 0.5 * (dark + light)
    floor_color = mean + (torch.where(parity > 0, light, dark) - mean) * contrast
    color = torch.where((hit == 0)[..., None], floor_color, color)
    light_dir = F.normalize(torch.tensor(LIGHT_DIR, dtype=dtype), dim=0)
    for k, ob in enumerate(scene.objects):
        shade = AMBIENT + DIFFUSE * (normals[k + 1] @ light_dir).clamp_min(0)
        obj_color = torch.tensor(COLORS[ob.color], dtype=dtype) * shade[..., None]
        color = torch.where((hit == k + 1)[..., None], obj_color, color)
    depth = torch.where(sky, torch.full_like(t_min, FAR), t_min)
    return color, depth, hit


def render(
    scene: Scene,
    num_frames: int = WORLD_FRAMES,
    height: int = 64,
    width: int = 64,
    supersample: int = 1,
    dtype: torch.dtype = torch.float32,
) -> RenderOutput:
    """Render ``scene``; deterministic (no randomness beyond the scene's own seeds).

    ``supersample`` > 1 averages ss x ss sub-pixel rays for the RGB (anti-aliased edges); depth, validity and masks
    always come from the pixel-centre ray so they stay exact.
    """
    if min(num_frames, height, width, supersample) < 1:
        raise InputError(
            f"render: frames, height, width and supersample must be >= 1, got {num_frames}, {height}, {width}, "
            f"{supersample}"
        )
    c2w = scene.camera.poses(num_frames).to(dtype)
    K = intrinsics_from_fov(scene.camera.fov_deg, height, width, dtype=dtype)
    pixel_angle = 1.0 / float(K[1, 1])
    origins, dirs = camera_rays(K, c2w, height, width)
    color, depth, hit = _trace(scene, origins, dirs.reshape(num_frames, -1, 3), num_frames, pixel_angle)
    if supersample > 1:
        ss = supersample
        k_fine = K.clone()
        k_fine[:2] *= ss
        _, fine_dirs = camera_rays(k_fine, c2w, height * ss, width * ss)
        fine, _, _ = _trace(scene, origins, fine_dirs.reshape(num_frames, -1, 3), num_frames, pixel_angle)
        fine = fine.reshape(num_frames, height * ss, width * ss, 3).permute(0, 3, 1, 2)
        rgb = F.avg_pool2d(fine, ss)
    else:
        rgb = color.reshape(num_frames, height, width, 3).permute(0, 3, 1, 2)
    hit = hit.reshape(num_frames, height, width)
    n = len(scene.objects)
    masks = hit[:, None] == torch.arange(1, n + 1).view(1, n, 1, 1)
    return RenderOutput(
        rgb=rgb.clamp(0, 1).contiguous(),
        depth=depth.reshape(num_frames, height, width),
        valid=hit >= 0,
        c2w=c2w,
        K=K.expand(num_frames, 3, 3).clone(),
        masks=masks,
    )
