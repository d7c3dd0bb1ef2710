"""DiffusionNFT as its authors run it (NVlabs/DiffusionNFT: scripts/train_nft_sd3.py, config/nft.py). The optimality
probabilities, the adaptive-weighted loss with its KL term, the old-policy decay and the per-video noise levels are
checked against references written here from those formulas; the loss moves the model toward preferred samples;
rollouts and loss use one guidance; a tiny run trains with any sampler and resumes exactly."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

from drf.config import load_config
from drf.errors import ConfigError
from drf.logging import read_metrics
from drf.models.base import Cond
from tests.fixtures.wan import tiny_generator
from tests.trainers.conftest import ROOT, TINY_NFT_CONFIG, make_trainer, shared_critic, wrap_critic
from tests.trainers.launcher import TORCHRUN
from tests.trainers.test_resume import Interrupt, StopAfter, _state
from trainers.nft import NFTConfig, NFTRunConfig, NFTTrainer, nft_loss, old_decay, optimality, velocity_per_video


def nft_cfg(tmp_path, *overrides: str) -> NFTRunConfig:
    base = [f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}", f"logging.output_dir={tmp_path}",
            "logging.report=false"]  # fmt: skip
    return load_config(TINY_NFT_CONFIG, NFTRunConfig, [*base, *overrides])


# -------------------------------------------------------------------------------------------------------------------- r
def authors_r(rewards: torch.Tensor, adv_clip: float, global_std: bool) -> torch.Tensor:
    """PerPromptStatTracker.update (each prompt's mean; with global_std the std of every reward, else the prompt's;
    + 1e-4), then the training loop's clamp(A, -adv_clip, adv_clip) / adv_clip / 2 + 0.5, clamped to [0, 1]."""
    rewards = rewards.double()
    mean = rewards.mean(1, keepdim=True)
    std = rewards.std(unbiased=False) if global_std else rewards.std(1, unbiased=False, keepdim=True)
    advantages = ((rewards - mean) / (std + 1e-4)).clamp(-adv_clip, adv_clip)
    return (advantages / adv_clip / 2.0 + 0.5).clamp(0, 1)


def saturated(r: torch.Tensor) -> float:
    return float(((r == 0) | (r == 1)).double().mean())


def test_optimality_follows_the_authors_global_std_and_clip_and_never_saturates():
    """drf floors the std at 1e-4 where the authors add 1e-4: on rewards of std ~1 that moves A by ~1e-4 |A|, and r by
    at most 0.1 of that (|A| <= 5), hence atol 1e-4."""
    rewards = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    rewards[0] = 0.3  # a group that scored alike: no preference, exactly
    r = optimality({"critic": rewards}, {"critic": 1.0}, NFTConfig())
    reference = authors_r(rewards, 5.0, global_std=True)
    torch.testing.assert_close(r.double(), reference, atol=1e-4, rtol=0)
    assert torch.equal(r[0], torch.full((4,), 0.5))
    assert saturated(r) == saturated(reference) == 0.0


def test_group_std_with_unit_clip_saturates_as_the_formula_says():
    """The mapping drf used before (group std, clip at 1): r at 0 or 1 for |A| >= 1, about 40 % of a group of 4.
    Rewards on a scale of 100, so that the 1e-4 the authors add to a group's std (drf floors it) stays below 1e-5
    of it."""
    rewards = 100 * torch.randn(256, 4, generator=torch.Generator().manual_seed(1))
    r = optimality({"critic": rewards}, {"critic": 1.0}, NFTConfig(std_mode="group", adv_clip=1.0))
    reference = authors_r(rewards, 1.0, global_std=False)
    torch.testing.assert_close(r.double(), reference, atol=1e-4, rtol=0)
    assert saturated(r) == saturated(reference) and 0.3 < saturated(r) < 0.5


# ----------------------------------------------------------------------------------------------------------------- loss
def authors_loss(x0, eps, t, fwd, old, ref, r, beta, adv_clip, kl_weight, adaptive):
    """The training loop's loss in float64: x_t = (1 - t) x0 + t eps; positive = beta fwd + (1 - beta) old, implicit
    negative = (1 + beta) old - beta fwd; x0 predictions x_t - t v; each branch's squared x0 error over its own
    no-grad mean |x0 error| (clipped at 1e-5) — or, without adaptive weighting, the squared velocity error to
    eps - x0; r pos / beta + (1 - r) neg / beta, times adv_clip, batch mean; + kl_weight mean((fwd - ref)^2)."""
    x0, eps, old, ref = (v.double() for v in (x0, eps, old, ref))
    t = t.double().view(-1, 1, 1, 1, 1)
    dims = tuple(range(1, x0.ndim))
    xt = (1 - t) * x0 + t * eps
    positive = beta * fwd + (1 - beta) * old
    negative = (1.0 + beta) * old - beta * fwd

    def branch(prediction):
        if not adaptive:
            return ((prediction - (eps - x0)) ** 2).mean(dim=dims)
        x0_prediction = xt - t * prediction
        with torch.no_grad():
            weight = torch.abs(x0_prediction - x0).mean(dim=dims, keepdim=True).clip(min=0.00001)
        return ((x0_prediction - x0) ** 2 / weight).mean(dim=dims)

    policy = ((r.double() * branch(positive) / beta + (1.0 - r.double()) * branch(negative) / beta) * adv_clip).mean()
    return policy + kl_weight * ((fwd - ref) ** 2).mean(dim=dims).mean()


@pytest.mark.parametrize("adaptive", [True, False])
def test_loss_and_gradient_match_the_authors_formula(adaptive):
    """float32 against float64: drf forms the x0 error as t (target - v) rather than x_t - t v - x0, a reordering
    worth a few float32 ulps, hence rtol 1e-5 on the value and 1e-4 on the gradient."""
    g = torch.Generator().manual_seed(2)
    shape = (3, 4, 2, 3, 3)
    x0, eps, v_old, v_ref = (torch.randn(shape, generator=g) for _ in range(4))
    v_theta = (v_old + 0.3 * torch.randn(shape, generator=g)).requires_grad_()
    t, r = torch.tensor([0.2, 0.6, 0.95]), torch.tensor([0.1, 0.5, 1.0])
    n = NFTConfig(beta=0.7, adv_clip=5.0, kl_weight=0.05, adaptive_weighting=adaptive)
    loss, kl = nft_loss(v_theta, v_old, eps - x0, t, r, n, v_ref)
    (grad,) = torch.autograd.grad(loss, v_theta)

    theta64 = v_theta.detach().double().requires_grad_()
    reference = authors_loss(x0, eps, t, theta64, v_old, v_ref, r, 0.7, 5.0, 0.05, adaptive)
    (reference_grad,) = torch.autograd.grad(reference, theta64)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad.double(), reference_grad, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(kl.double(), ((v_theta.detach() - v_ref).double() ** 2).mean(), rtol=1e-6, atol=0)


def test_adaptive_weighting_changes_how_much_each_video_pulls():
    """Per video the adaptive error is t mean(e^2) / mean|e| (e the velocity error): same direction as the plain MSE,
    but a video with a ten times larger error pulls about ten times less hard relative to it."""
    g = torch.Generator().manual_seed(3)
    target = torch.randn(2, 4, 2, 3, 3, generator=g)
    v = target + torch.randn(2, 4, 2, 3, 3, generator=g) * torch.tensor([0.1, 1.0]).view(-1, 1, 1, 1, 1)
    v.requires_grad_()
    t, r = torch.tensor([0.5, 0.5]), torch.ones(2)
    plain = torch.autograd.grad(nft_loss(v, v.detach(), target, t, r, NFTConfig(adaptive_weighting=False))[0], v)[0]
    adaptive = torch.autograd.grad(nft_loss(v, v.detach(), target, t, r, NFTConfig())[0], v)[0]
    ratio = [float(adaptive[i].norm() / plain[i].norm()) for i in range(2)]
    assert 7 < ratio[0] / ratio[1] < 13
    for i in range(2):
        assert torch.nn.functional.cosine_similarity(adaptive[i].flatten(), plain[i].flatten(), dim=0) > 0.999


def test_negative_aware_loss_moves_the_model_toward_the_preferred_sample():
    """Two fixed final latents, A preferred (r = 1) and B not (r = 0); the model predicts x0 = theta, so its velocity
    at x_t is (x_t - theta) / t, and the old policy stays at the midpoint. With beta = 1 the positive branch's x0
    prediction is theta and the negative one's 2 old - theta: both errors vanish at theta = A, whatever the adaptive
    weights, so the loss's minimum is A — the positive term pulls toward A and the negative one pushes away from B."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, generator=g), torch.randn(8, generator=g)
    old = (a + b) / 2
    theta = torch.nn.Parameter(old.clone())
    x0 = torch.stack([a, b])
    r = torch.tensor([1.0, 0.0])
    n = NFTConfig(kl_weight=0.0)
    optimizer = torch.optim.Adam([theta], lr=0.02)
    for _ in range(400):
        t = 0.05 + 0.9 * torch.rand((), generator=g)
        eps = torch.randn(2, 8, generator=g)
        x_t = (1 - t) * x0 + t * eps
        loss, _ = nft_loss((x_t - theta) / t, (x_t - old) / t, eps - x0, t.expand(2), r, n)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (theta - a).norm() < 0.05 * (old - a).norm()
    assert (theta - b).norm() > (old - b).norm()


# ---------------------------------------------------------------------------------------------------------------- decay
def authors_decay(step: int, flat: int, uprate: float, uphold: float) -> float:
    """return_decay(step, decay_type): 0 before ``flat``, then (step - flat) * uprate capped at ``uphold``."""
    return 0.0 if step < flat else min((step - flat) * uprate, uphold)


@pytest.mark.parametrize(
    ("kind", "settings"),
    [((0, 0.001, 0.5), {}), ((75, 0.0075, 0.999), {"old_decay_start": 75, "old_decay_rate": 0.0075,
                                                    "old_decay_max": 0.999}),
     ((0, 0.0, 0.0), {"old_decay_rate": 0.0, "old_decay_max": 0.0})],
)  # fmt: skip
def test_old_policy_decay_follows_the_authors_schedules(kind, settings):
    """decay_type 1 (the defaults), 2 (their OCR run) and 0 (the old policy is the current one)."""
    n = NFTConfig(**settings)
    assert [old_decay(step, n) for step in range(1200)] == [authors_decay(step, *kind) for step in range(1200)]


# -------------------------------------------------------------------------------------------------------------- trainer
def record_velocity_calls(trainer, monkeypatch) -> list[tuple[float, bool, torch.Tensor]]:
    """Every call of the generator's velocity as (guidance, CFG on, timestep)."""
    calls = []
    velocity = trainer.generator.velocity

    def recorded(x, timestep, cond):
        calls.append((cond.guidance_scale, cond.do_cfg, timestep.detach().cpu().clone()))
        return velocity(x, timestep, cond)

    monkeypatch.setattr(trainer.generator, "velocity", recorded)
    return calls


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_rollouts_and_every_velocity_of_the_loss_use_one_guidance(tmp_path, monkeypatch, guidance):
    """The tiny config evaluates at guidance 4; the rollouts and v_old, v_ref, v_theta all use nft.rollout_guidance,
    so the loss names the policy that sampled."""
    trainer = make_trainer(nft_cfg(tmp_path, "name=run", f"nft.rollout_guidance={guidance}", "nft.steps=1",
                                   "nft.export=false", "logging.sample_every=0"))  # fmt: skip
    assert trainer.cfg.sampling.guidance_scale == 4.0
    calls = record_velocity_calls(trainer, monkeypatch)
    trainer.train_step(0)
    assert calls and {(g, cfg) for g, cfg, _ in calls} == {(guidance, guidance > 1)}


def test_each_video_trains_distinct_noise_levels_of_the_rollout_schedule(tmp_path, monkeypatch):
    """4 sampling steps x 0.99 -> 3 levels per video, each a (sigma, timestep) of the sampler, none repeated, drawn
    per video; v_old, v_ref and v_theta see the same ones."""
    trainer = make_trainer(nft_cfg(tmp_path, "name=run", "nft.steps=1", "nft.export=false", "logging.sample_every=0"))
    calls = record_velocity_calls(trainer, monkeypatch)
    trainer.train_step(0)
    schedule = trainer.generator.scheduler(4).timesteps.cpu()
    loss_calls = [t for _, _, t in calls if t.ndim == 1]
    n = trainer.cfg.nft
    videos = n.prompts_per_step * n.group_size
    assert len(loss_calls) == n.gradient_accumulation * 3 * 3  # micro-batches x levels x (old, ref, theta)
    for micro in range(n.gradient_accumulation):
        levels = loss_calls[micro * 9 : (micro + 1) * 9]
        for level in range(3):
            old, ref, theta = levels[3 * level : 3 * level + 3]
            assert torch.equal(old, ref) and torch.equal(old, theta) and len(theta) == videos
        per_video = torch.stack(levels[::3], dim=1)  # [videos, 3]
        assert all(len(set(row.tolist())) == 3 and set(row.tolist()) <= set(schedule.tolist()) for row in per_video)
        assert len({tuple(row.tolist()) for row in per_video}) > 1  # drawn per video, not per batch


def test_uniform_levels_are_drawn_per_video_in_their_range(tmp_path, monkeypatch):
    trainer = make_trainer(nft_cfg(tmp_path, "name=run", "nft.steps=1", "nft.export=false", "logging.sample_every=0",
                                   "nft.timesteps=uniform", "nft.t_min=0.3", "nft.t_max=0.6"))  # fmt: skip
    calls = record_velocity_calls(trainer, monkeypatch)
    trainer.train_step(0)
    levels = torch.stack([t for _, _, t in calls if t.ndim == 1][::3])  # [micro-batches x 3 levels, videos]
    assert levels.min() >= 300 and levels.max() <= 600 and len(levels.flatten().unique()) == levels.numel()


def test_two_experts_each_run_the_videos_at_their_noise_levels(tmp_path):
    """Wan 2.2: the sampler's first step (timestep 1000) is the high-noise expert's, the others the low-noise one's;
    both train, and a batch whose videos sit at levels of both experts gets each video's velocity from its own."""
    cfg = nft_cfg(tmp_path, "name=experts", "nft.steps=1", "nft.export=false", "logging.sample_every=0")
    trainer = NFTTrainer(cfg, generator=tiny_generator(name="wan-tiny-experts", fresh=True), critic=shared_critic())
    assert list(trainer.transformer.keys()) == ["transformer", "transformer_2"]
    _, finite = trainer.train_step(0)
    assert finite
    for expert in ("transformer", "transformer_2"):
        module = getattr(trainer.generator.pipe, expert)
        assert any(p.abs().max() > 0 for n, p in module.named_parameters() if "lora_B" in n), expert

    gen = trainer.generator
    cond = gen.encode_prompts(["a red ball", "a blue cube", "a cat"], 3.0)
    x = torch.randn(3, *gen.init_latents(1, torch.Generator().manual_seed(0)).shape[1:],
                    generator=torch.Generator().manual_seed(1))  # fmt: skip
    timestep = gen.scheduler(4).timesteps[[0, 2, 0]]
    assert gen.expert_at(float(timestep[0])) != gen.expert_at(float(timestep[1]))
    with torch.no_grad():
        together = velocity_per_video(gen, x, timestep, cond)
        alone = [gen.velocity(x[i : i + 1], timestep[i], Cond(cond.embeds[i : i + 1], cond.negative_embeds[i : i + 1],
                                                               3.0)) for i in range(3)]  # fmt: skip
    # A batch of three and three batches of one round differently in float32 (measured: up to 1.3e-6 on values near
    # 1e-2 with two threads); the other expert's weights would differ by orders more.
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-4, atol=1e-5)


def test_old_policy_moves_by_the_scheduled_decay_after_a_step(tmp_path):
    trainer = make_trainer(nft_cfg(tmp_path, "name=run", "nft.steps=1", "nft.export=false", "logging.sample_every=0"))
    before = [p.detach().clone() for p in trainer.params]
    trainer.train_step(0)
    d = 0.001  # min(0.001 x 1 step, 0.5)
    changed = False
    for old, start, new in zip(trainer.old.weights, before, trainer.params):
        torch.testing.assert_close(old, d * start + (1 - d) * new.detach(), rtol=1e-6, atol=1e-8)
        changed |= not torch.equal(start, new)
    assert changed


def test_tiny_run_trains_with_unipc_rollouts_and_finite_loss(tmp_path):
    trainer = make_trainer(nft_cfg(tmp_path, "name=run", "nft.steps=2", "nft.export=false", "logging.sample_every=0"))
    assert trainer.cfg.model.scheduler == "unipc"  # any sampler: the loss never reads the sampler's steps
    trainer.train()
    records = read_metrics(trainer.run_dir)
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert torch.isfinite(torch.tensor(record["loss"])) and record["skipped"] == 0
        assert "nft/optimality_std" in record and "time/backward" in record
        assert record["nft/optimality_saturated"] == 0
    assert records[0]["nft/kl"] == 0 < records[1]["nft/kl"]  # LoRA B starts at 0: the base model, then it moves
    assert [r["nft/old_decay"] for r in records] == [0.001, 0.002]
    assert any(p.abs().max() > 0 for n, p in trainer.transformer.named_parameters() if "lora_B" in n)


@pytest.mark.distributed
@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="needs torchrun (installed with torch)")
def test_two_processes_train_one_nft_run_on_their_shared_std(tmp_path):
    """Two processes: each step gathers both processes' rewards for the global std (a collective both must reach) and
    trains; test_multiprocess checks the gathered statistics themselves."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "drf", "train", str(TINY_NFT_CONFIG),
        "--set", f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}",
        "--set", f"logging.output_dir={tmp_path}",
        "--set", "nft.steps=2",
        "--set", "logging.sample_every=0",
        "--set", "logging.report=false",
        "--set", "nft.export=false",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "x 2 processes" in result.stdout
    records = read_metrics(tmp_path / "tiny_nft")
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["skipped"] == 0 and r["nft/optimality_saturated"] == 0 for r in records)


SETTINGS = ("nft.steps=4", "nft.checkpoint_every=2", "nft.keep_last=5", "nft.export=false", "logging.sample_every=0",
            "nft.old_decay_rate=0.2")  # fmt: skip


def test_nft_run_resumes_bit_for_bit_with_its_old_policy(tmp_path):
    straight = make_trainer(nft_cfg(tmp_path, "name=straight", *SETTINGS))
    straight.train()
    first = make_trainer(nft_cfg(tmp_path, "name=resumed", *SETTINGS))
    wrap_critic(first, lambda critic: StopAfter(critic, calls=3 * 2))  # dies inside step 4, after checkpoint step-2
    with pytest.raises(Interrupt):
        first.train()
    second = make_trainer(nft_cfg(tmp_path, "name=resumed", *SETTINGS), resume="latest")
    assert second.step == 2
    assert not all(torch.equal(o, p) for o, p in zip(second.old.weights, second.params))  # old lags the trained
    second.train()
    expected, got = _state(straight), _state(second)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    for old, again in zip(straight.old.weights, second.old.weights):
        assert torch.equal(old, again)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nft.group_size=1", "group_size"),
        ("nft.t_max=0.5", "read with timesteps: uniform only"),
        ("nft.timesteps=uniform nft.t_max=1.5", "t_min"),
        ("nft.trainable=full", "kl_weight.*needs trainable: lora"),
        ("nft.adv_scale=1.0", "is now adv_clip"),
        ("nft.old_decay=0.9", "old_decay_max: c, old_decay_rate: 1"),
        ("nft.timesteps_per_step=2", "timestep_fraction"),
        ("sampling.grad_window.k=2", "read by DRF"),
        ("sampling.grad_window.kind=x0", "read by DRF"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        nft_cfg(tmp_path, *override.split())
