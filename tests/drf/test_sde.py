"""The SDE step used for policy gradients: Euler in the zero-noise limit, exact Gaussian log-probabilities."""

from __future__ import annotations

import pytest
import torch

from drf.sampling import sde_step

SHAPE = (2, 4, 3, 5, 5)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


@pytest.mark.parametrize("kind", ["flow_grpo", "dance_grpo", "cps"])
@pytest.mark.parametrize(("sigma", "sigma_next"), [(1.0, 0.9), (0.6, 0.45)])
def test_zero_noise_is_the_euler_step(kind: str, sigma: float, sigma_next: float) -> None:
    v, x, eps = _inputs()
    step = sde_step(v, x, sigma, sigma_next, kind=kind, noise_level=1e-6, noise=eps)
    euler = x + (sigma_next - sigma) * v
    torch.testing.assert_close(step.x_next, euler, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["flow_grpo", "dance_grpo", "cps"])
def test_log_prob_is_the_mean_reduced_normal_log_density(kind: str) -> None:
    v, x, eps = _inputs()
    step = sde_step(v, x, 0.7, 0.55, kind=kind, noise_level=0.7, noise=eps)
    reference = torch.distributions.Normal(step.mean, step.std).log_prob(step.x_next).mean(dim=(1, 2, 3, 4))
    torch.testing.assert_close(step.log_prob, reference, rtol=1e-5, atol=1e-5)
    again = sde_step(v, x, 0.7, 0.55, kind=kind, noise_level=0.7, x_next=step.x_next)
    torch.testing.assert_close(again.log_prob, step.log_prob, rtol=0, atol=0)


def test_flow_grpo_std_follows_its_schedule_and_replaces_sigma_one() -> None:
    v, x, eps = _inputs()
    step = sde_step(v, x, 0.5, 0.4, noise_level=0.7, noise=eps)
    torch.testing.assert_close(step.std, torch.tensor(0.7 * (0.5 / 0.5) ** 0.5 * 0.1**0.5))
    first = sde_step(v, x, 1.0, 0.9, noise_level=0.7, noise=eps)
    assert torch.isfinite(first.log_prob).all()
    torch.testing.assert_close(first.std, torch.tensor(0.7 * (1.0 / 0.1) ** 0.5 * 0.1**0.5))


def test_log_prob_gradient_flows_to_the_velocity_only_through_the_mean() -> None:
    v, x, eps = _inputs()
    v.requires_grad_(True)
    sample = sde_step(v.detach(), x, 0.7, 0.55, noise=eps)
    step = sde_step(v, x, 0.7, 0.55, x_next=sample.x_next)
    step.log_prob.sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_unknown_kind_is_rejected() -> None:
    v, x, _ = _inputs()
    with pytest.raises(ValueError, match="unknown SDE kind 'ddim'"):
        sde_step(v, x, 0.5, 0.4, kind="ddim")
