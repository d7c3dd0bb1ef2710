"""Saliency maps: gradient magnitude per question lands where the reward reads, normalised per question."""

from __future__ import annotations

import torch

from drf.report.saliency import reward_gradient_magnitude, saliency_maps, smooth
from tests.report.conftest import small_question_set

T, H, W = 3, 16, 16
TOP_LEFT = (slice(0, H // 2), slice(0, W // 2))
BOTTOM_RIGHT = (slice(H // 2, H), slice(W // 2, W))


def _region_score(frames: torch.Tensor) -> torch.Tensor:
    """q0: a nonlinear function of mean red in the top-left quadrant; q1: of mean blue in the bottom-right."""
    red = frames[:, :, 0, TOP_LEFT[0], TOP_LEFT[1]].mean(dim=(1, 2, 3))
    blue = frames[:, :, 2, BOTTOM_RIGHT[0], BOTTOM_RIGHT[1]]
    return torch.stack([torch.sigmoid(4 * red - 2), (blue**2).mean(dim=(1, 2, 3))], dim=1)


def _mass_in(maps: torch.Tensor, region: tuple[slice, slice]) -> float:
    """Fraction of a [T,H,W] map's total mass inside ``region``."""
    return float(maps[:, region[0], region[1]].sum() / maps.sum())


def test_saliency_concentrates_on_the_region_the_reward_reads():
    frames = torch.rand(2, T, 3, H, W)
    maps = saliency_maps(_region_score, frames)
    assert maps.shape == (2, 2, T, H, W)
    for b in range(2):
        # Without smoothing the gradient is exactly zero outside the region the reward reads (and non-zero inside).
        for q, region in enumerate((TOP_LEFT, BOTTOM_RIGHT)):
            outside = maps[b, q].clone()
            outside[:, region[0], region[1]] = 0
            assert torch.count_nonzero(outside) == 0
            assert maps[b, q][:, region[0], region[1]].sum() > 0


def test_smoothed_smoothgrad_keeps_at_least_90_percent_of_the_mass_in_the_region():
    frames = torch.rand(1, T, 3, H, W)
    generator = torch.Generator().manual_seed(0)
    maps = saliency_maps(_region_score, frames, samples=4, noise_std=0.1, kernel=3, generator=generator)
    # A 3x3 blur spills one pixel row/column past the quadrant edges: 9/8 * 9/8 of the area at most, ~79% of it
    # inside; noise never adds mass outside, so >= 90% is a real check of where the mass is.
    assert _mass_in(maps[0, 0], TOP_LEFT) >= 0.9
    assert _mass_in(maps[0, 1], BOTTOM_RIGHT) >= 0.9


def test_maps_are_normalised_per_question_and_a_constant_reward_gives_an_empty_map():
    def score(frames: torch.Tensor) -> torch.Tensor:
        strong = 100 * frames[:, :, 0].mean(dim=(1, 2, 3))
        weak = 0.01 * frames[:, :, 1].mean(dim=(1, 2, 3))
        constant = torch.zeros(frames.shape[0])
        return torch.stack([strong, weak, constant], dim=1)

    maps = saliency_maps(score, torch.rand(1, T, 3, H, W))
    # Questions with gradients 10^4 apart both reach 1: each map uses its own range.
    assert torch.allclose(maps[0, 0].amax(), torch.tensor(1.0))
    assert torch.allclose(maps[0, 1].amax(), torch.tensor(1.0))
    assert maps.min() >= 0 and maps.max() <= 1
    assert torch.count_nonzero(maps[0, 2]) == 0


def test_each_video_of_a_batch_gets_its_own_gradient():
    frames = torch.rand(3, T, 3, H, W)
    together = reward_gradient_magnitude(_region_score, frames)
    alone = torch.cat([reward_gradient_magnitude(_region_score, frames[b : b + 1]) for b in range(3)])
    torch.testing.assert_close(together, alone)


def test_smooth_preserves_a_uniform_map_and_blurs_a_spike():
    uniform = torch.ones(1, 1, 5, 5)
    torch.testing.assert_close(smooth(uniform, 3), uniform)  # edges average only existing pixels
    spike = torch.zeros(1, 1, 5, 5)
    spike[..., 2, 2] = 9.0
    assert torch.count_nonzero(smooth(spike, 3)) == 9


def test_tiny_critic_saliency_has_one_finite_map_per_question(tiny_critic):
    qset = small_question_set("a red cube on a checkered floor")
    frames = torch.rand(1, 9, 3, 32, 32)  # the tiny videos' shape: the critic's first call per shape is slow
    maps = saliency_maps(lambda x: tiny_critic.score(x, [qset]).rewards, frames, kernel=3)
    assert maps.shape == (1, len(qset), 9, 32, 32)
    assert torch.isfinite(maps).all()
    # Every question of a real (if random) critic reads the pixels, so each map is non-empty and peaks at 1.
    torch.testing.assert_close(maps.flatten(2).amax(dim=2), torch.ones(1, len(qset)))
