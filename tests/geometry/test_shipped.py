"""The shipped toy-world LGM: its files are the ones its manifest records, it loads, and it reads toy latents."""

import json

import pytest
import torch

from drf.geometry.distill import latent_frame_indices
from drf.geometry.lgm import LatentGeometryModel
from drf.toyworld.assets import MANIFEST, sha256_file
from drf.toyworld.scene import WORLD_FRAMES
from drf.toyworld.train.lgm import TOY_LGM, toy_lgm_path

ROOT = toy_lgm_path().parent
pytestmark = pytest.mark.skipif(not (toy_lgm_path() / "config.json").is_file(), reason="toy LGM not shipped")


def test_manifest_records_every_shipped_file_with_its_sha256_and_figures():
    entry = json.loads((ROOT / MANIFEST).read_text())["models"][TOY_LGM]
    shipped = {p.relative_to(ROOT).as_posix() for p in toy_lgm_path().iterdir() if p.is_file()}
    assert set(entry["files"]) == shipped
    for relative, info in entry["files"].items():
        assert sha256_file(ROOT / relative) == info["sha256"] and (ROOT / relative).stat().st_size == info["bytes"]
    assert sum(info["bytes"] for info in entry["files"].values()) < 3_000_000
    metrics = entry["heldout_metrics"]
    assert metrics["rotation_deg"] < metrics["rotation_deg_identity_baseline"]
    assert metrics["depth_abs_rel"] < metrics["depth_abs_rel_constant_baseline"]


def test_shipped_model_reads_toy_latents():
    model = LatentGeometryModel.from_pretrained(toy_lgm_path())
    side = 8 * model.config.patch  # the toy model's token grid is 8x8
    frames = len(latent_frame_indices(WORLD_FRAMES))  # 3 latent frames for the world's 9-frame clips
    geom = model(torch.randn(2, 16, frames, side, side))
    grid = 8 * model.config.upsample
    assert geom.depth.shape == (2, frames, grid, grid) and torch.isfinite(geom.depth).all()


def test_shipped_model_was_distilled_on_the_shipped_toy_vae():
    """The LGM reads one VAE's latent space; after retraining the toy VAE, rerun ``train_toy_lgm()``."""
    entry = json.loads((ROOT / MANIFEST).read_text())["models"][TOY_LGM]
    assert entry["vae"]["source"] == "drf/assets/toyworld/generator/vae"
    vae_dir = ROOT.parent / "toyworld" / "generator" / "vae"
    weights = sorted(vae_dir.glob("*.safetensors"))
    if not weights:
        pytest.skip("toy VAE not shipped")
    assert entry["vae"]["weights_sha256"] == sha256_file(weights[0]), "toy VAE changed: retrain the LGM (drf toyworld train geometry)"
