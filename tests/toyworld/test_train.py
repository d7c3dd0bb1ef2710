"""Smoke test of the three toy training scripts chained as in the shipped run (VAE -> T2V -> critic), at toy sizes:
each writes a loadable model, a manifest entry that verifies, and finite metrics."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from drf.cli import main
from drf.toyworld.assets import load_manifest, verify_manifest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy-assets")
    cache = tmp_path_factory.mktemp("toy-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("DRF_TOYWORLD_CACHE", str(cache))
    common = ["--out", str(root), "--device", "cpu", "--steps", "2", "--threads", "1"]
    vae = ["--set", "train_clips=3", "--set", "eval_clips=2", "--set", "stats_clips=2", "--set", "batch=1"]
    t2v = ["--set", "train_clips=3", "--set", "eval_prompts=2", "--set", "eval_steps=2", "--set", "batch=2",
           "--set", "probe_clips=2", "--set", "probe_prompts=1"]  # fmt: skip
    critic = ["--set", "eval_renders=2", "--set", "t2v_eval=1", "--set", "videos_per_step=2",
              "--set", "questions_per_video=2"]  # fmt: skip
    codes = [
        main(["toyworld", "train", "vae", *common, *vae]),
        main(["toyworld", "train", "t2v", *common, *t2v]),
        main(["toyworld", "train", "critic", *common, *critic]),
    ]
    mp.undo()
    return root, codes


def test_each_script_writes_a_verified_manifest_entry(trained):
    root, codes = trained
    assert codes == [0, 0, 0]
    models = load_manifest(root)["models"]
    assert set(models) == {"vae", "t2v", "critic"}
    assert verify_manifest(root) == []
    for name, entry in models.items():
        # --steps sets each of the critic's three phases (vision, answer, words)
        assert entry["steps"] == (6 if name == "critic" else 2) and entry["seed"] == 0 and entry["command"]
    assert math.isfinite(models["vae"]["metrics"]["psnr_db"])
    assert set(models["vae"]["metrics"]["found_by_color"]["round_trips"]) <= {"red", "yellow", "green", "blue"}
    assert 0.0 <= models["t2v"]["metrics"]["samples"]["alignment"] <= 1.0
    for entry in (models["vae"], models["t2v"]):
        assert entry["cpu_seconds"] > 0 and entry["loss_curve"]["rows"][0][0] == 0
    assert not (root / ".train").exists() or not any((root / ".train").iterdir())
    gates = models["critic"]["metrics"]["gates"]
    assert 0.0 <= gates["accuracy_min"] <= 1.0 and 0.0 <= gates["grey_max_p_yes"] <= 1.0
    assert models["critic"]["frames"] == {"policy": "all"}
    assert [row[0] for row in models["critic"]["phases"]["vision"]["curve"]] == [0]


def test_vae_config_holds_latent_statistics_from_training(trained):
    from diffusers import AutoencoderKLWan

    root, _ = trained
    vae = AutoencoderKLWan.from_pretrained(root / "generator" / "vae")
    assert len(vae.config.latents_std) == vae.config.z_dim
    assert all(s > 0 for s in vae.config.latents_std)
    # The stats are the trained model's, not diffusers' defaults for the 16-channel Wan 2.1 VAE.
    assert vae.config.latents_std[0] != pytest.approx(2.8184)


def test_trained_models_load_and_score_through_the_public_paths(trained):
    from critics.config import CriticConfig
    from critics.registry import load_critic
    from drf.toyworld.assets import NUM_FRAMES, load_toy_generator
    from prompts.registry import decompose

    root, _ = trained
    generator = load_toy_generator(root)
    cond = generator.encode_prompts(["a red cube on a checkered floor, the camera is static"], 1.0)
    latents = generator.init_latents(1, torch.Generator().manual_seed(0))
    frames = generator.decode(latents)
    assert frames.shape == (1, NUM_FRAMES, 3, 64, 64)
    assert generator.velocity(latents, torch.tensor(500.0), cond).shape == latents.shape
    critic = load_critic(CriticConfig(family="qwen2_vl", path=str(root / "critic")))
    qset = decompose("a red cube on a checkered floor, the camera is static")
    out = critic.score(frames, [qset])
    assert torch.isfinite(out.rewards[out.mask]).all()


def test_latent_object_masks_cover_the_cells_each_latent_frame_encodes():
    """Latent frame 0 encodes pixel frame 0, latent frame k pixel frames 4k-3..4k, and each latent cell a 4x4 block."""
    from drf.toyworld.train.t2v import latent_object_masks

    objects = torch.zeros(1, 9, 64, 64, dtype=torch.bool)
    objects[0, 0, 5, 9] = True  # frame 0 -> latent frame 0, cell (1, 2)
    objects[0, 3, 63, 0] = True  # frame 3 -> latent frame 1, cell (15, 0)
    objects[0, 8, 20, 40] = True  # frame 8 -> latent frame 2, cell (5, 10)
    cells = latent_object_masks(objects)
    assert cells.shape == (1, 3, 16, 16)
    assert cells.nonzero().tolist() == [[0, 0, 1, 2], [0, 1, 15, 0], [0, 2, 5, 10]]


def test_training_sigmas_follow_a_shifted_logit_normal():
    from drf.toyworld.train.t2v import T2VTrainConfig, training_sigmas

    config = T2VTrainConfig(shift=1.5, logit_mean=0.0, logit_std=1.0)
    sigmas = training_sigmas(20000, config, torch.Generator().manual_seed(0))
    # The median of sigmoid(N(0, 1)) is 0.5, shifted: 1.5 * 0.5 / (1 + 0.5 * 0.5) = 0.6.
    assert float(sigmas.median()) == pytest.approx(0.6, abs=0.01)
    assert 0.0 < float(sigmas.min()) and float(sigmas.max()) < 1.0
    # The share below 0.3 (where shapes sharpen): P(u < 0.3 / (1.5 - 0.5 * 0.3)) for u = sigmoid(N(0, 1)).
    u = 0.3 / (1.5 - 0.5 * 0.3)
    expected = 0.5 * (1 + math.erf(math.log(u / (1 - u)) / math.sqrt(2)))
    assert float((sigmas < 0.3).float().mean()) == pytest.approx(expected, abs=0.01)


def _straight_and_resumed(tmp_path, monkeypatch, model: str, args: list[str], evaluation) -> None:
    """Train ``model`` for 3 steps into ``a``; into ``b``, 2 steps killed after the last one (``evaluation``, the
    function that runs after training, raises) and then the same command with 3 steps, which must resume."""

    class Killed(Exception):
        pass

    def crash(*_args, **_kwargs):
        raise Killed

    assert main(["toyworld", "train", model, "--out", str(tmp_path / "a"), "--steps", "3", *args]) == 0
    with monkeypatch.context() as m:
        m.setattr(*evaluation, crash)
        with pytest.raises(Killed):
            main(["toyworld", "train", model, "--out", str(tmp_path / "b"), "--steps", "2", *args])
    assert (tmp_path / "b" / ".train" / f"{model}.pt").is_file()
    assert main(["toyworld", "train", model, "--out", str(tmp_path / "b"), "--steps", "3", *args]) == 0
    assert not (tmp_path / "b" / ".train" / f"{model}.pt").exists()


def _assert_same_weights(tmp_path, part: str) -> None:
    from safetensors.torch import load_file

    weights = [load_file(tmp_path / run / "generator" / part) for run in "ab"]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0)


def test_an_interrupted_t2v_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """The T2V run resumes with its optimiser, EMA and generators: killed after its last step, rerun with more steps,
    it ships (EMA) weights equal to an uninterrupted run's."""
    import drf.toyworld.train.t2v as t2v_script

    monkeypatch.setenv("DRF_TOYWORLD_CACHE", str(tmp_path / "cache"))
    common = ["--device", "cpu", "--threads", "1", "--set", "checkpoint_minutes=0"]
    vae = ["--set", "train_clips=2", "--set", "eval_clips=1", "--set", "stats_clips=1", "--set", "batch=1"]
    assert main(["toyworld", "train", "vae", "--out", str(tmp_path / "a"), "--steps", "1", *common, *vae]) == 0
    shutil.copytree(tmp_path / "a" / "generator", tmp_path / "b" / "generator")
    args = [*common, "--set", "train_clips=3", "--set", "eval_prompts=1", "--set", "eval_steps=2", "--set", "batch=2",
            "--set", "probe_clips=2", "--set", "probe_prompts=1"]  # fmt: skip
    _straight_and_resumed(tmp_path, monkeypatch, "t2v", args, (t2v_script, "evaluate_t2v"))
    for part in ("transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        _assert_same_weights(tmp_path, part)


def test_an_interrupted_vae_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """A run killed after its last training step (here: the evaluation raises) leaves its state behind; rerunning
    with more steps resumes from it and ends bit for bit where an uninterrupted run ends."""
    import drf.toyworld.train.vae as vae_script

    monkeypatch.setenv("DRF_TOYWORLD_CACHE", str(tmp_path / "cache"))
    args = ["--device", "cpu", "--threads", "1", "--set", "train_clips=3", "--set", "eval_clips=1",
            "--set", "stats_clips=1", "--set", "batch=1", "--set", "checkpoint_minutes=0"]  # fmt: skip
    _straight_and_resumed(tmp_path, monkeypatch, "vae", args, (vae_script, "evaluate_vae"))
    _assert_same_weights(tmp_path, "vae/diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize(
    ("model", "override", "message"),
    [
        ("vae", "bach=2", "--set bach=2: unknown key 'bach'; did you mean 'batch'?"),
        ("t2v", "batch=two", "--set batch=two: 'batch' expects int, got 'two'"),
        ("geometry", "batch=8", "--set batch=8: unknown key 'batch'; did you mean 'train.batch'?"),
    ],
)
def test_a_bad_override_is_one_line_before_any_training(tmp_path, capsys, model, override, message):
    assert main(["toyworld", "train", model, "--out", str(tmp_path), "--set", override]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not any(tmp_path.iterdir())
