"""Latent geometry model: layout of its output, save/load, clear errors, and distillation that learns."""

import json

import pytest
import torch

from drf.errors import InputError, ModelLoadError
from drf.geometry.distill import (
    DistillConfig,
    distill,
    distillation_loss,
    evaluate,
    labels_from,
    latent_frame_indices,
)
from drf.geometry.lgm import LatentGeometryModel, LGMConfig, rotation_from_6d
from drf.toyworld.scene import WORLD_FRAMES, sample_scenes
from drf.toyworld.teacher import RenderTeacher
from drf.toyworld.train.lgm import toyworld_dataset

SMALL = LGMConfig(dim=32, blocks=1, heads=2)


@pytest.fixture(scope="module")
def toy_data():
    """Twelve 32x32x9 toy clips encoded by a seeded random tiny VAE ([12,16,3,4,4]) with exact labels (8x8 grid)."""
    torch.manual_seed(0)
    vae, _ = _random_vae()
    scenes = sample_scenes(12, seed=4, num_frames=9)
    latents, labels = toyworld_dataset(scenes, vae, grid=8, num_frames=9, size=32)
    return latents, labels, [s.camera.motion for s in scenes]


def _random_vae():
    from diffusers import AutoencoderKLWan

    from drf.models.tiny import preset

    torch.manual_seed(0)
    return AutoencoderKLWan(**preset("wan-tiny").vae).eval(), "random"


def test_output_is_one_frame_per_latent_frame_with_frame0_at_the_origin():
    model = LatentGeometryModel(SMALL)
    geom = model(torch.randn(2, 16, 5, 8, 8))
    assert geom.c2w.shape == (2, 5, 4, 4) and geom.depth.shape == (2, 5, 16, 16)
    assert geom.intrinsics.shape == (2, 5, 3, 3) and geom.static.shape == (2, 5, 16, 16)
    assert torch.equal(geom.c2w[:, 0], torch.eye(4).expand(2, 4, 4))
    rot = geom.c2w[:, 1:, :3, :3]
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(2, 4), atol=1e-5)
    assert (geom.depth > 0).all() and model.pixel_frames(5) == [0, 4, 8, 12, 16] == latent_frame_indices(17)


def test_rotation_from_6d_recovers_a_rotation_from_its_first_two_columns():
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    q = q * torch.linalg.det(q).sign()
    assert torch.allclose(rotation_from_6d(torch.cat([q[:, 0], q[:, 1]])), q, atol=1e-12)


def test_save_and_load_round_trip(tmp_path):
    model = LatentGeometryModel(SMALL).eval()
    model.save_pretrained(tmp_path / "lgm")
    loaded = LatentGeometryModel.from_pretrained(tmp_path / "lgm")
    x = torch.randn(1, 16, 3, 4, 6)
    assert loaded.config == SMALL
    assert torch.equal(model(x).depth, loaded(x).depth) and torch.equal(model(x).c2w, loaded(x).c2w)


def test_loading_errors_say_what_is_missing(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json"):
        LatentGeometryModel.from_pretrained(tmp_path)
    LatentGeometryModel(SMALL).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**json.loads((tmp_path / "config.json").read_text()), "dims": 3}))
    with pytest.raises(ModelLoadError, match="unknown LGM config key 'dims'"):
        LatentGeometryModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"dim": 64, "heads": 2}))
    with pytest.raises(ModelLoadError, match="does not match its config.json"):
        LatentGeometryModel.from_pretrained(tmp_path)


def test_wrong_latents_fail_with_the_expected_layout():
    model = LatentGeometryModel(SMALL)
    with pytest.raises(InputError, match=r"expects latents \[B,16,F,h,w\], got \[2, 5, 16, 8, 8\]"):
        model(torch.randn(2, 5, 16, 8, 8))
    with pytest.raises(InputError, match="exceed the model's limits"):
        model(torch.randn(1, 16, 40, 2, 2))


def test_labels_are_relative_to_frame0_and_scale_free():
    scene = sample_scenes(1, seed=2)[0]
    geom = RenderTeacher(num_frames=WORLD_FRAMES, frames=[0, 4, 8], height=16, width=16)([scene])
    labels = labels_from(geom)
    assert torch.allclose(labels.rel_c2w[:, 0], torch.eye(4), atol=1e-6)
    static0 = labels.static[:, 0] > 0.5
    assert labels.depth[:, 0][static0].median().item() == pytest.approx(1.0, rel=0.05)
    c2w = geom.c2w.clone()
    c2w[..., :3, 3] *= 3.0
    scaled = labels_from(type(geom)(c2w, geom.depth * 3.0, geom.intrinsics, geom.static))
    assert torch.allclose(scaled.rel_c2w, labels.rel_c2w, atol=1e-5) and torch.allclose(scaled.depth, labels.depth)


def test_distillation_loss_falls_on_the_toy_world(toy_data):
    latents, labels, motions = toy_data
    torch.manual_seed(0)
    model = LatentGeometryModel(SMALL)
    cfg = DistillConfig(steps=60, batch=12, lr=3e-3, warmup=5, log_every=20, threads=2)
    before, parts_before = distillation_loss(model(latents), labels, cfg)
    history = distill(model, latents, labels, cfg, device="cpu", log=None)
    after, parts = distillation_loss(model(latents), labels, cfg)
    # 60 steps on 12 clips. A random VAE's latents carry little camera motion, so the pose terms fall least; the
    # total must still drop by a quarter and the depth term at least halve.
    assert after.item() < 0.75 * before.item()
    assert parts["depth"] < 0.5 * parts_before["depth"]
    assert history[-1]["loss"] < history[0]["loss"]
    metrics = evaluate(model, latents, labels, motions)
    assert {"rotation_deg", "translation_dir_deg", "depth_abs_rel", "camera_motion_accuracy"} <= metrics.keys()
    assert metrics["depth_abs_rel"] < metrics["depth_abs_rel_constant_baseline"]
