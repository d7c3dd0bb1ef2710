"""The ray-caster: deterministic, and its depth, poses and masks agree with each other exactly."""

import math

import pytest
import torch

from drf.geometry.camera import project_points, unproject_depth
from drf.toyworld.render import render
from drf.toyworld.scene import COLORS, CameraPath, ObjectSpec, Scene, sample_scene, sample_scenes

pytestmark = pytest.mark.usefixtures("one_thread")


def _scene(camera: str = "orbit_left") -> Scene:
    objects = (
        ObjectSpec("sphere", "red", "large", (-1.0, 0.5)),
        ObjectSpec("cube", "blue", "small", (1.2, -0.8), yaw=0.4, motion="left", travel=(0.8, 0.0)),
        ObjectSpec("cylinder", "green", "small", (0.3, 1.8)),
    )
    return Scene(objects, CameraPath(motion=camera, eye=(0.5, 2.0, -5.0), amount=30.0 if camera != "dolly_in" else 1.5))


def test_same_seed_gives_the_same_scene_and_the_same_pixels():
    a, b = sample_scene(7), sample_scene(7)
    assert a == b and a != sample_scene(8)
    assert sample_scenes(3, seed=2)[1] == sample_scenes(2, seed=2)[1]
    ra, rb = render(a), render(b)
    assert torch.equal(ra.rgb, rb.rgb) and torch.equal(ra.depth, rb.depth) and torch.equal(ra.c2w, rb.c2w)


def test_output_shapes_and_ranges():
    out = render(_scene(), num_frames=9, height=32, width=40, supersample=2)
    assert out.rgb.shape == (9, 3, 32, 40) and out.depth.shape == (9, 32, 40)
    assert out.c2w.shape == (9, 4, 4) and out.K.shape == (9, 3, 3) and out.masks.shape == (9, 3, 32, 40)
    assert out.rgb.min() >= 0 and out.rgb.max() <= 1
    assert out.valid.any() and (~out.valid).any()  # floor and sky both in view


@pytest.mark.parametrize("camera", ["orbit_left", "dolly_in", "pan_right"])
def test_floor_pixels_reproject_exactly_into_other_frames(camera):
    """Unproject frame j with its exact depth and pose, project into frame i, and compare inverse depth with frame i's
    depth interpolated bilinearly; inverse depth is affine in pixel coordinates on a plane, so on floor pixels whose
    four neighbours are floor too the interpolation is exact and only float64 round-off remains."""
    out = render(_scene(camera), num_frames=17, dtype=torch.float64)
    floor = out.valid & ~out.masks.any(1)
    for j, i in ((0, 16), (16, 0), (5, 11)):
        points = unproject_depth(out.depth[j], out.K[j], out.c2w[j])[floor[j]]
        assert points[:, 1].abs().max() < 1e-9  # floor pixels unproject onto the plane y = 0
        uv, z = project_points(points, out.K[i], out.c2w[i])
        x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5
        x0, y0 = x.floor().long(), y.floor().long()
        inside = (x0 >= 0) & (y0 >= 0) & (x0 < 63) & (y0 < 63)
        x, y, x0, y0, z = x[inside], y[inside], x0[inside], y0[inside], z[inside]
        corners = [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)]
        usable = torch.stack([floor[i][r, c] for r, c in corners]).all(0)
        inv = [1.0 / out.depth[i][r, c] for r, c in corners]
        fx, fy = x - x0, y - y0
        interp = (1 - fy) * ((1 - fx) * inv[0] + fx * inv[1]) + fy * ((1 - fx) * inv[2] + fx * inv[3])
        assert usable.sum() > 500
        err = (interp[usable] - 1.0 / z[usable]).abs().max()
        assert err < 1e-9, f"frame {j} -> {i}: inverse-depth error {err}"


def test_object_pixels_unproject_onto_their_primitive_surfaces():
    """Depth and pose are exact on objects too: every sphere pixel is one radius from the centre, every cube pixel on
    the cube's boundary, every cylinder pixel on its side or top cap (float64 round-off only)."""
    scene = _scene("orbit_right")
    out = render(scene, num_frames=17, dtype=torch.float64)
    centers = scene.object_centers(17)
    for f in (0, 8, 16):
        for k, ob in enumerate(scene.objects):
            pts = unproject_depth(out.depth[f], out.K[f], out.c2w[f])[out.masks[f, k]] - centers[f, k]
            assert len(pts) > 10
            r = ob.extent
            if ob.shape == "sphere":
                err = (pts.norm(dim=-1) - r).abs().max()
            elif ob.shape == "cube":
                c, s = math.cos(ob.yaw), math.sin(ob.yaw)
                local = torch.stack([c * pts[:, 0] - s * pts[:, 2], pts[:, 1], s * pts[:, 0] + c * pts[:, 2]], -1)
                err = (local.abs().max(-1).values - r).abs().max()
            else:
                radial = pts[:, [0, 2]].norm(dim=-1)
                on_side = (radial - r).abs() < 1e-9
                on_top = (pts[:, 1] - r).abs() < 1e-9
                err = 0.0 if (on_side | on_top).all() else 1.0
            assert err < 1e-9, f"{ob.shape} frame {f}: surface error {err}"


def test_masks_are_disjoint_and_carry_the_object_hue():
    scene = _scene()
    out = render(scene)
    assert out.masks.sum(1).max() <= 1
    for k, ob in enumerate(scene.objects):
        pixels = out.rgb.permute(0, 2, 3, 1)[out.masks[:, k]]
        base = torch.tensor(COLORS[ob.color])
        # Lambert shading scales the base colour: each pixel is a positive multiple of it.
        scale = pixels.sum(-1, keepdim=True) / base.sum()
        torch.testing.assert_close(pixels, scale * base, atol=1e-5, rtol=0)


def test_object_motion_moves_the_mask_left_as_seen_from_frame_0():
    scene = Scene((ObjectSpec("cube", "red", "small", (0.0, 0.0), motion="left", travel=(1.0, 0.0)),), CameraPath())
    out = render(scene, num_frames=17)
    cols = torch.arange(64.0)
    cx = [(out.masks[f, 0].float().sum(0) * cols).sum() / out.masks[f, 0].sum() for f in (0, 16)]
    # Default camera looks along +z, so camera-left is world +x.
    assert cx[1] < cx[0] - 5
