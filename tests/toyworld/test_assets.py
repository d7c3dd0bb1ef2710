"""The shipped toy models: the files are the ones the manifest records, and each loads through the same
``from_pretrained`` path as a real model and runs at the toy size."""

from __future__ import annotations

import torch

from drf.toyworld.assets import (
    ASSETS_DIR,
    NUM_FRAMES,
    load_manifest,
    load_toy_generator,
    toy_critic_path,
    toy_critic_settings,
    toy_generator_path,
    verify_manifest,
)

MAX_BYTES = 25 * 1024 * 1024


def test_every_shipped_file_matches_the_manifest():
    assert verify_manifest() == []


def test_manifest_records_provenance_and_metrics_for_each_model():
    models = load_manifest()["models"]
    assert set(models) == {"vae", "t2v", "critic"}
    for entry in models.values():
        assert entry["command"].startswith("drf toyworld train")
        assert entry["files"] and entry["train_seconds"] > 0 and "seed" in entry and entry["metrics"]
    assert models["vae"]["metrics"]["psnr_db"] > 0
    assert models["t2v"]["metrics"]["samples"]["alignment"] > 0
    assert models["vae"]["metrics"]["alignment_round_trips"] > 0
    assert "agreement_with_oracle_t2v" in models["critic"]["metrics"]


def test_assets_stay_within_the_size_budget():
    total = sum(p.stat().st_size for p in ASSETS_DIR.rglob("*") if p.is_file())
    assert total <= MAX_BYTES


def test_verify_manifest_reports_a_changed_file(tmp_path):
    import shutil

    root = tmp_path / "toyworld"
    shutil.copytree(ASSETS_DIR, root)
    config = root / "generator" / "vae" / "config.json"
    config.write_text(config.read_text() + " ")
    (root / "stray.bin").write_bytes(b"x")
    problems = verify_manifest(root)
    assert any("generator/vae/config.json" in p for p in problems)
    assert any("stray.bin is not recorded" in p for p in problems)


def test_generator_loads_with_from_pretrained_and_samples_a_video():
    from drf.grad_window import GradWindow
    from drf.sampling import sample

    generator = load_toy_generator()
    assert (toy_generator_path() / "model_index.json").is_file()
    cond = generator.encode_prompts(["a large red cube on a checkered floor, the camera is static"], 3.0)
    rollout = sample(generator, cond, GradWindow.none(4), rng=torch.Generator().manual_seed(0))
    frames = generator.decode(rollout.latents)
    assert frames.shape == (1, NUM_FRAMES, 3, 64, 64)
    assert torch.isfinite(frames).all()


def test_vae_reconstructs_a_held_out_render():
    from diffusers import AutoencoderKLWan

    from drf.toyworld.render import render
    from drf.toyworld.scene import sample_scene

    vae = AutoencoderKLWan.from_pretrained(toy_generator_path() / "vae")
    frames = render(sample_scene(12345, split="eval")).rgb[:5]  # [5,3,64,64]
    x = frames.transpose(0, 1)[None] * 2 - 1
    with torch.no_grad():
        recon = vae(x).sample.clamp(-1, 1)[0].transpose(0, 1) * 0.5 + 0.5
    psnr = -10 * torch.log10(((recon - frames) ** 2).mean())
    # A trained VAE; an untrained one scores about 10 dB on these frames.
    assert psnr > 18


def test_vae_round_trips_keep_every_colour_and_shape():
    """One fixed scene per world colour (cube and sphere alternating): after encode/decode the oracle still finds
    every object with its colour and shape — the old toy VAE erased blue and green entirely."""
    from diffusers import AutoencoderKLWan

    from drf.toyworld.oracle import analyze
    from drf.toyworld.render import render
    from drf.toyworld.scene import WORLD_COLORS, ObjectSpec, Scene, world_camera

    vae = AutoencoderKLWan.from_pretrained(toy_generator_path() / "vae").eval()
    for i, color in enumerate(WORLD_COLORS):
        shape = ("cube", "sphere")[i % 2]
        scene = Scene((ObjectSpec(shape, color, "small", (0.0, 0.0), yaw=0.4),), world_camera("pan_left"))
        frames = render(scene).rgb
        with torch.no_grad():
            trip = vae(frames.transpose(0, 1)[None] * 2 - 1).sample.clamp(-1, 1)[0].transpose(0, 1) * 0.5 + 0.5
        found = [(o.color, o.shape) for o in analyze(trip).objects]
        assert found == [(color, shape)], f"{color} {shape}: the oracle finds {found} after the round trip"


def test_shipped_t2v_draws_the_prompted_object():
    """Samples of the shipped T2V model (the demo's 12 steps, guidance 4) on fixed prompts: the oracle finds an
    object of the prompted colour in most of them (a model that draws texture, as the old one did, finds none)."""
    from drf.grad_window import GradWindow
    from drf.sampling import sample
    from drf.toyworld.oracle import analyze

    generator = load_toy_generator()
    prompts = [f"a large {c} {s} on a checkered floor, the camera is static"
               for c, s in (("red", "cube"), ("blue", "sphere"), ("yellow", "sphere"), ("green", "cube"))]
    cond = generator.encode_prompts(prompts, 4.0)
    with torch.no_grad():
        rollout = sample(generator, cond, GradWindow.none(12), rng=torch.Generator().manual_seed(0))
        videos = generator.decode(rollout.latents)
    found = [any(o.color == p.split()[2] for o in analyze(v).objects) for v, p in zip(videos, prompts)]
    assert sum(found) >= 3, f"prompted colour found in {sum(found)} of 4 samples"


def test_critic_loads_with_load_critic_and_scores_with_gradient_to_frames():
    from critics.config import CriticConfig
    from critics.registry import load_critic
    from prompts.registry import decompose

    critic = load_critic(CriticConfig(path=str(toy_critic_path()), **toy_critic_settings()))
    assert type(critic.model).__name__ == "Qwen2VLForConditionalGeneration"
    frames = torch.rand(1, NUM_FRAMES, 3, 64, 64, requires_grad=True)
    out = critic.score(frames, [decompose("a small blue sphere on a checkered floor, the camera pans left")])
    out.rewards[out.mask].sum().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
