"""The toy floor's motion between two frames: an 8-parameter planar flow fitted by Gauss-Newton (Lucas-Kanade).

The oracle reads camera moves from it (pans shift all floor rows alike, orbits shift near and far rows differently,
dollies expand or contract the floor) and maps object positions back to the first frame through it. The flow is
exact for small motions of a plane, which the toy floor is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from drf.toyworld.image import gaussian_blur


def _basis(height: int, width: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Planar-flow basis [8,H,W] for u and v: u = p0 + p1 x + p2 y + p6 x^2 + p7 xy, v = p3 + p4 x + p5 y + p6 xy + p7 y^2
    with x, y in half-image units about the centre; parameters are in pixels."""
    ys, xs = torch.meshgrid(
        (torch.arange(height, dtype=dtype) + 0.5 - height / 2) / (height / 2),
        (torch.arange(width, dtype=dtype) + 0.5 - width / 2) / (width / 2),
        indexing="ij",
    )
    zero, one = torch.zeros_like(xs), torch.ones_like(xs)
    bu = torch.stack([one, xs, ys, zero, zero, zero, xs * xs, xs * ys])
    bv = torch.stack([zero, zero, zero, one, xs, ys, xs * ys, ys * ys])
    return bu, bv


def _warp(image: Tensor, flow: Tensor) -> Tensor:
    """Sample ``image`` [1,1,H,W] at x + flow(x); flow [2,H,W] in pixels."""
    _, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=image.dtype), torch.arange(w, dtype=image.dtype), indexing="ij")
    gx = (xs + flow[0] + 0.5) / w * 2 - 1
    gy = (ys + flow[1] + 0.5) / h * 2 - 1
    grid = torch.stack([gx, gy], -1)[None]
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def fit_planar_flow(ref: Tensor, moving: Tensor, weight: Tensor, iters: int = 12) -> Tensor:
    """Parameters [8] of the floor flow w with moving(x + w(x)) ~ ref(x) on pixels where ``weight`` [H,W] > 0.

    Coarse-to-fine (half resolution first) Gauss-Newton on blurred grey images; a point x of ``ref`` moves to x + w(x).
    """
    params = torch.zeros(8, dtype=ref.dtype)
    for scale in (2, 1):
        r = F.avg_pool2d(ref[None, None], scale) if scale > 1 else ref[None, None]
        m = F.avg_pool2d(moving[None, None], scale) if scale > 1 else moving[None, None]
        wt = F.avg_pool2d(weight[None, None], scale)[0, 0] if scale > 1 else weight
        r, m = gaussian_blur(r, 1.0), gaussian_blur(m, 1.0)
        hh, ww = r.shape[-2:]
        bu, bv = _basis(hh, ww, ref.dtype)
        p = params / scale
        wt = wt.clone()
        wt[:2], wt[-2:], wt[:, :2], wt[:, -2:] = 0, 0, 0, 0
        for _ in range(iters):
            flow = torch.stack([torch.einsum("k,khw->hw", p, bu), torch.einsum("k,khw->hw", p, bv)])
            warped = _warp(m, flow)[0, 0]
            gy, gx = torch.gradient(warped)
            jac = gx * bu + gy * bv  # [8,H,W]
            res = warped - r[0, 0]
            jw = (jac * wt).reshape(8, -1)
            hess = jw @ jac.reshape(8, -1).T + 1e-3 * torch.eye(8, dtype=ref.dtype)
            step = torch.linalg.solve(hess, -(jw @ res.reshape(-1)))
            p = p + step
            if step.abs().max() < 1e-3:
                break
        params = p * scale
    return params


def flow_at(params: Tensor, points: Tensor, height: int, width: int) -> Tensor:
    """Flow [N,2] of planar ``params`` [8] at pixel points [N,2] (u, v in pixel units, centres at +0.5)."""
    x = (points[:, 0] - width / 2) / (width / 2)
    y = (points[:, 1] - height / 2) / (height / 2)
    p = params
    u = p[0] + p[1] * x + p[2] * y + p[6] * x * x + p[7] * x * y
    v = p[3] + p[4] * x + p[5] * y + p[6] * x * y + p[7] * y * y
    return torch.stack([u, v], -1)


def map_to_frame0(points: Tensor, frames: Tensor, flows: Tensor, height: int, width: int) -> Tensor:
    """Floor points [N,2], point i seen in frame ``frames[i]``, mapped back to frame 0 by inverting the per-step
    flows [T-1,8] (all points step back together)."""
    p = points.clone()
    for t in range(len(flows) - 1, -1, -1):
        active = frames > t
        if not active.any():
            continue
        target = p[active]
        q = target.clone()
        for _ in range(6):  # fixed point of q + w_t(q) = target
            q = target - flow_at(flows[t], q, height, width)
        p[active] = q
    return p
