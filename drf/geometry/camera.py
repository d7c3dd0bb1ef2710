"""Camera math in OpenCV axes, shared by the toy-world renderer and the geometry rewards.

Conventions (used everywhere in drf):
- camera axes: x right, y down, z forward; ``c2w`` maps camera coordinates to world coordinates, ``w2c`` its inverse;
- the toy world is y-up (the floor is the plane y = 0), so a level camera's y axis points along world -y;
- pixel (u, v) = (column, row); the centre of pixel (i, j) is (j + 0.5, i + 0.5), so the principal point of an
  undistorted W x H image is (W / 2, H / 2);
- depth is z-depth: the camera-z coordinate of the point, not the distance along the ray.
All functions broadcast over leading dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

WORLD_UP = (0.0, 1.0, 0.0)


def _as_tensor(x, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    device = like.device if like is not None else None
    return torch.as_tensor(x, dtype=dtype, device=device)


def look_at(eye: Tensor, target: Tensor, up=WORLD_UP) -> Tensor:
    """c2w [...,4,4] for a camera at ``eye`` [...,3] looking at ``target`` [...,3] with world ``up`` pointing image-up.

    forward = target - eye; right = forward x up; down = forward x right — a right-handed OpenCV frame.
    """
    eye = _as_tensor(eye)
    target = _as_tensor(target, eye)
    up_t = _as_tensor(up, eye).expand_as(eye)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up_t, dim=-1), dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    return pose_from_axes(right, down, forward, eye)


def pose_from_axes(right: Tensor, down: Tensor, forward: Tensor, position: Tensor) -> Tensor:
    """c2w [...,4,4] whose columns are the camera axes and position expressed in world coordinates."""
    c2w = torch.zeros(*position.shape[:-1], 4, 4, dtype=position.dtype, device=position.device)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = down
    c2w[..., :3, 2] = forward
    c2w[..., :3, 3] = position
    c2w[..., 3, 3] = 1.0
    return c2w


def invert_pose(pose: Tensor) -> Tensor:
    """Inverse of a rigid transform [...,4,4] (c2w <-> w2c), exact for orthonormal rotations."""
    rot = pose[..., :3, :3]
    trans = pose[..., :3, 3:]
    inv = torch.zeros_like(pose)
    inv[..., :3, :3] = rot.transpose(-1, -2)
    inv[..., :3, 3:] = -rot.transpose(-1, -2) @ trans
    inv[..., 3, 3] = 1.0
    return inv


def relative_pose(c2w_src: Tensor, c2w_dst: Tensor) -> Tensor:
    """Transform [...,4,4] taking camera-``src`` coordinates to camera-``dst`` coordinates: w2c_dst @ c2w_src."""
    return invert_pose(c2w_dst) @ c2w_src


def intrinsics_from_fov(fov_deg: float, height: int, width: int, dtype: torch.dtype | None = None) -> Tensor:
    """K [3,3] for square pixels with vertical field of view ``fov_deg`` and the principal point at the image centre."""
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)


def pixel_centers(height: int, width: int, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """[H,W,2] (u, v) coordinates of pixel centres."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def camera_rays(K: Tensor, c2w: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """World-space rays through pixel centres: origins [...,3] and directions [...,H,W,3].

    Directions are not normalised: their camera-z component is 1, so a hit at ray parameter t has z-depth t.
    """
    uv = pixel_centers(height, width, dtype=c2w.dtype, device=c2w.device)
    ones = torch.ones_like(uv[..., :1])
    pix = torch.cat([uv, ones], dim=-1)  # [H,W,3]
    k_inv = torch.linalg.inv(K)[..., None, None, :, :]  # [...,1,1,3,3]
    cam_dirs = (k_inv @ pix[..., None]).squeeze(-1)  # [...,H,W,3], z == 1
    rot = c2w[..., None, None, :3, :3]
    dirs = (rot @ cam_dirs[..., None]).squeeze(-1)
    return c2w[..., :3, 3], dirs


def unproject_depth(depth: Tensor, K: Tensor, c2w: Tensor) -> Tensor:
    """World points [...,H,W,3] of every pixel given z-depth [...,H,W], K [...,3,3] and c2w [...,4,4]."""
    height, width = depth.shape[-2:]
    origins, dirs = camera_rays(K, c2w, height, width)
    return origins[..., None, None, :] + dirs * depth[..., None]


def project_points(points: Tensor, K: Tensor, c2w: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel coordinates [...,N,2] and z-depth [...,N] of world points [...,N,3] seen by camera (K, c2w)."""
    w2c = invert_pose(c2w)
    cam = (w2c[..., None, :3, :3] @ points[..., None]).squeeze(-1) + w2c[..., None, :3, 3]
    z = cam[..., 2]
    pix = (K[..., None, :, :] @ cam[..., None]).squeeze(-1)
    uv = pix[..., :2] / pix[..., 2:3]
    return uv, z


def rotation_about_y(angle: Tensor | float) -> Tensor:
    """[...,3,3] rotation by ``angle`` radians about world y (positive turns +z towards +x)."""
    angle = _as_tensor(angle)
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    rows = [torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1), torch.stack([-s, zero, c], -1)]
    return torch.stack(rows, dim=-2)
