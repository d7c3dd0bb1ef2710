"""Camera math: OpenCV axes, exact inverses, and projection that undoes unprojection."""

import math

import pytest
import torch

from drf.geometry.camera import (
    camera_rays,
    intrinsics_from_fov,
    invert_pose,
    look_at,
    pixel_centers,
    project_points,
    relative_pose,
    rotation_about_y,
    unproject_depth,
)


@pytest.fixture(autouse=True)
def _float64():
    """Exact-inverse checks at float64 so tolerances are tight; restored afterwards for other tests."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _poses() -> torch.Tensor:
    eyes = torch.tensor([[0.0, 2.0, -5.0], [3.0, 1.0, 1.0], [-2.0, 4.0, 2.0]])
    targets = torch.tensor([[0.0, 0.4, 0.0], [0.0, 0.0, 0.0], [1.0, 0.5, -1.0]])
    return look_at(eyes, targets)


def test_look_at_is_a_right_handed_opencv_frame_pointing_at_the_target():
    c2w = _poses()
    rot = c2w[:, :3, :3]
    torch.testing.assert_close(rot.transpose(-1, -2) @ rot, torch.eye(3).expand(3, 3, 3))
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(3))
    forward = torch.nn.functional.normalize(torch.tensor([0.0, 0.4, 0.0]) - torch.tensor([0.0, 2.0, -5.0]), dim=0)
    torch.testing.assert_close(rot[0, :, 2], forward)
    # Image-down (camera y) has a negative world-y component and image-right (camera x) is horizontal.
    assert (rot[:, 1, 1] < 0).all()
    torch.testing.assert_close(rot[:, 1, 0], torch.zeros(3))


def test_invert_pose_and_relative_pose_compose_to_identity():
    c2w = _poses()
    torch.testing.assert_close(invert_pose(c2w) @ c2w, torch.eye(4).expand(3, 4, 4))
    rel = relative_pose(c2w[0], c2w[1])
    torch.testing.assert_close(c2w[1] @ rel, c2w[0])


def test_point_on_the_optical_axis_projects_to_the_principal_point():
    K = intrinsics_from_fov(50.0, 64, 48)
    assert K[0, 2] == 24 and K[1, 2] == 32
    assert math.isclose(float(K[1, 1]), 32 / math.tan(math.radians(25)))
    c2w = _poses()[0]
    point = c2w[:3, 3] + 3.0 * c2w[:3, 2]
    uv, z = project_points(point[None], K, c2w)
    torch.testing.assert_close(uv[0], torch.tensor([24.0, 32.0]))
    torch.testing.assert_close(z[0], torch.tensor(3.0))


def test_projecting_unprojected_depth_returns_pixel_centres_and_depth():
    K = intrinsics_from_fov(60.0, 8, 10).expand(3, 3, 3)
    c2w = _poses()
    depth = 1.0 + torch.rand(3, 8, 10) * 5
    points = unproject_depth(depth, K, c2w)
    uv, z = project_points(points.reshape(3, -1, 3), K, c2w)
    torch.testing.assert_close(uv.reshape(3, 8, 10, 2), pixel_centers(8, 10).expand(3, 8, 10, 2))
    torch.testing.assert_close(z.reshape(3, 8, 10), depth)


def test_ray_directions_have_unit_camera_z_so_ray_parameter_is_z_depth():
    K = intrinsics_from_fov(50.0, 6, 6)
    c2w = _poses()[1]
    _, dirs = camera_rays(K, c2w, 6, 6)
    cam_z = dirs @ c2w[:3, 2]
    torch.testing.assert_close(cam_z, torch.ones(6, 6))


def test_rotation_about_y_turns_forward_towards_plus_x():
    rot = rotation_about_y(torch.tensor(math.pi / 2))
    torch.testing.assert_close(rot @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))
