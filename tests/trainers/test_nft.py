"""DiffusionNFT: optimality probabilities, the negative-aware loss moves the model toward preferred samples, a tiny run
trains with any sampler and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from drf.config import load_config
from drf.errors import ConfigError
from drf.logging import read_metrics
from tests.trainers.conftest import ROOT, TINY_NFT_CONFIG, make_trainer, wrap_critic
from tests.trainers.test_resume import Interrupt, StopAfter, _state
from trainers.advantages import group_advantages
from trainers.nft import NFTRunConfig, nft_loss, optimality


def nft_cfg(tmp_path, *overrides: str) -> NFTRunConfig:
    base = [f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}", f"logging.output_dir={tmp_path}",
            "logging.report=false"]  # fmt: skip
    return load_config(TINY_NFT_CONFIG, NFTRunConfig, [*base, *overrides])


def test_optimality_is_one_half_plus_half_the_clipped_group_advantage():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    r = optimality(group_advantages(rewards, "group", 1e-3), adv_scale=1.0)
    std = (2 / 3) ** 0.5
    torch.testing.assert_close(r[0], torch.tensor([0.5 - 0.5 / std, 0.5, 0.5 + 0.5 / std]).clamp(0, 1))
    assert torch.equal(r[1], torch.full((3,), 0.5))  # a group that scored alike expresses no preference
    assert r.min() >= 0 and r.max() <= 1


def test_negative_aware_loss_moves_the_model_toward_the_preferred_sample():
    """Two fixed final latents, A preferred (r = 1) and B not (r = 0); the model predicts x0 = theta, so its velocity
    at x_t is (x_t - theta) / t, and the old policy stays at the midpoint. With beta = 1 the loss is
    (||A - theta||^2 + ||theta - (2 old - B)||^2) / (2 t^2), whose minimum is theta = A: the positive term pulls toward
    A and the implicit negative policy pushes away from B by as much again."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, generator=g), torch.randn(8, generator=g)
    old = (a + b) / 2
    theta = torch.nn.Parameter(old.clone())
    x0 = torch.stack([a, b])
    r = torch.tensor([1.0, 0.0])
    optimizer = torch.optim.Adam([theta], lr=0.02)
    for _ in range(400):
        t = 0.05 + 0.9 * torch.rand((), generator=g)
        eps = torch.randn(2, 8, generator=g)
        x_t = (1 - t) * x0 + t * eps
        loss = nft_loss((x_t - theta) / t, (x_t - old) / t, eps - x0, r, beta=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (theta - a).norm() < 0.05 * (old - a).norm()
    assert (theta - b).norm() > (old - b).norm()


def test_tiny_run_trains_with_unipc_rollouts_and_finite_loss(tmp_path):
    trainer = make_trainer(nft_cfg(tmp_path, "name=run", "nft.steps=2", "nft.export=false", "logging.sample_every=0"))
    assert trainer.cfg.model.scheduler == "unipc"  # any sampler: the loss never reads the sampler's steps
    trainer.train()
    records = read_metrics(trainer.run_dir)
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert torch.isfinite(torch.tensor(record["loss"])) and record["skipped"] == 0
        assert "nft/optimality_std" in record and "time/backward" in record
    assert any(p.abs().max() > 0 for n, p in trainer.transformer.named_parameters() if "lora_B" in n)


SETTINGS = ("nft.steps=4", "nft.checkpoint_every=2", "nft.keep_last=5", "nft.export=false", "logging.sample_every=0")


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
    [("nft.group_size=1", "group_size"), ("nft.t_max=1.0", "t_min"), ("sampling.grad_window.k=2", "read by DRF")],
)
def test_bad_settings_are_one_line_errors(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        nft_cfg(tmp_path, override)
