"""The SDE step used for policy gradients: Euler in the zero-noise limit, exact Gaussian log-probabilities."""

from __future__ import annotations

import math

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


@pytest.mark.parametrize("kind", ["flow_grpo", "dance_grpo"])
def test_log_prob_is_the_mean_reduced_normal_log_density(kind: str) -> None:
    v, x, eps = _inputs()
    step = sde_step(v, x, 0.7, 0.55, kind=kind, noise_level=0.7, noise=eps)
    reference = torch.distributions.Normal(step.mean, step.std).log_prob(step.x_next).mean(dim=(1, 2, 3, 4))
    torch.testing.assert_close(step.log_prob, reference, rtol=1e-5, atol=1e-5)
    again = sde_step(v, x, 0.7, 0.55, kind=kind, noise_level=0.7, x_next=step.x_next)
    torch.testing.assert_close(again.log_prob, step.log_prob, rtol=0, atol=0)


def test_cps_log_prob_is_flow_grpos_squared_distance() -> None:
    """flow_grpo's CPS step scores -(x_next - mean)^2 (mean over non-batch dims), without the Gaussian's 1/(2 std^2):
    its clip ranges are set for that scale. Reference: the CPS mean and std written out from the formula."""
    v, x, eps = _inputs()
    sigma, sigma_next, a = 0.7, 0.55, 0.7
    step = sde_step(v, x, sigma, sigma_next, kind="cps", noise_level=a, noise=eps)
    std = sigma_next * math.sin(a * math.pi / 2)
    mean = (x - sigma * v) * (1 - sigma_next) + (x + (1 - sigma) * v) * math.sqrt(sigma_next**2 - std**2)
    x_next = mean + std * eps
    torch.testing.assert_close(step.x_next, x_next, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step.log_prob, -((x_next - mean) ** 2).mean(dim=(1, 2, 3, 4)), rtol=1e-5, atol=1e-6)


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


def test_sde_rollout_without_noise_matches_the_ode_chain_and_stores_transitions() -> None:
    from drf.grad_window import GradWindow, mix_window
    from drf.sampling import sample, sample_sde
    from tests.fixtures.wan import tiny_generator

    gen = tiny_generator("euler")
    cond = gen.encode_prompts(["a red cube"], 4.0)
    latents = gen.init_latents(1, torch.Generator().manual_seed(0))
    window = mix_window("fixed", 2, 4, iteration=0, start=1)
    sde = sample_sde(gen, cond, window, noise_level=1e-7, latents=latents.clone(), rng=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ode = sample(gen, cond, GradWindow.none(4), latents=latents.clone())
    torch.testing.assert_close(sde.latents, ode.latents, rtol=0, atol=1e-5)
    assert [t.step for t in sde.transitions] == [1, 2]
    # Re-scoring a stored transition reproduces its log-probability exactly (the GRPO ratio starts at 1).
    first = sde.transitions[0]
    with torch.no_grad():
        v = gen.velocity(first.latents, first.timestep, cond)
    again = sde_step(v, first.latents, first.sigma, first.sigma_next, noise_level=1e-7, x_next=first.next_latents)
    torch.testing.assert_close(again.log_prob, first.log_prob, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("schedule", "iterations", "expected"),
    [("fixed", [0, 5], [{2, 3}, {2, 3}]), ("progressive", [0, 2, 9], [{2, 3}, {3, 4}, {6, 7}])],
)
def test_mix_windows_follow_their_schedule(schedule, iterations, expected) -> None:
    from drf.grad_window import mix_window

    got = [set(mix_window(schedule, 2, 8, it, start=2, shift_every=2).steps) for it in iterations]
    assert got == expected


@pytest.mark.parametrize("schedule", ["fixed", "progressive", "random"])
def test_mix_window_keeps_the_last_step_out_unless_asked(schedule: str) -> None:
    from drf.grad_window import mix_window

    for it in range(12):
        assert 5 not in mix_window(schedule, 2, 6, it, start=9, seed=it, reach_end=False).steps
    assert 5 in mix_window("progressive", 2, 6, 11, reach_end=True).steps


def test_random_mix_window_is_seeded_and_contiguous() -> None:
    from drf.grad_window import mix_window

    windows = [sorted(mix_window("random", 3, 10, it, seed=4).steps) for it in range(6)]
    assert windows == [sorted(mix_window("random", 3, 10, it, seed=4).steps) for it in range(6)]
    assert all(w == list(range(w[0], w[0] + 3)) for w in windows) and len({w[0] for w in windows}) > 1
