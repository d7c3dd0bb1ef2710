"""critic.augment: off, the critic's reward is today's bit for bit; on, it is the mean over seeded random views (crops
re-resized, Gaussian blur, additive noise) of each video, and its gradient still reaches the pixels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from critics.augment import AugmentConfig, augmented_views, gaussian_blur, random_view, view_generator
from critics.reward import CriticReward
from drf.config import load_config
from drf.errors import ConfigError
from trainers.drf import DRFRunConfig

ROOT = Path(__file__).resolve().parents[2]
ON = AugmentConfig(n=3)


def _frames(requires_grad: bool = False) -> torch.Tensor:
    frames = torch.rand(2, 2, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    return frames.requires_grad_(requires_grad)


def test_off_gives_the_critics_own_rewards_bit_for_bit(make_critic, questions):
    critic = make_critic("qwen2_vl")
    frames = _frames()
    plain = critic.score(frames, questions)
    for reward in (CriticReward(critic), CriticReward(critic, AugmentConfig())):
        out = reward(frames, ["a", "b"], question_sets=questions, seeds=[5, 6])
        assert torch.equal(out.per_question, plain.rewards)
        assert torch.equal(out.extras["p_expected"], plain.p_expected)


def test_on_averages_seeded_views_and_passes_gradients_to_the_pixels(make_critic, questions):
    critic = make_critic("qwen2_vl")
    frames = _frames(requires_grad=True)
    out = CriticReward(critic, ON)(frames, ["a", "b"], question_sets=questions, seeds=[5, 6])
    plain = critic.score(frames.detach(), questions).rewards
    mask = out.mask
    assert not torch.equal(out.per_question[mask], plain[mask])  # the views are not the frames
    # The mean over the views, each scored on its own (video b's views come from seed b's stream alone).
    views = augmented_views(frames.detach(), ON, [5, 6])
    by_view = torch.stack([critic.score(v, questions).rewards for v in views]).mean(0)
    torch.testing.assert_close(out.per_question[mask], by_view[mask], rtol=1e-5, atol=1e-6)
    out.per_question[mask].sum().backward()
    assert torch.isfinite(frames.grad).all() and bool((frames.grad != 0).any(dim=(1, 2, 3, 4)).all())

    again = CriticReward(critic, ON)(frames.detach(), ["a", "b"], question_sets=questions, seeds=[5, 6])
    assert torch.equal(again.per_question, out.per_question.detach())  # same seeds, same views, same rewards
    other = CriticReward(critic, AugmentConfig(n=3, seed=1))(frames.detach(), ["a", "b"], question_sets=questions,
                                                            seeds=[5, 6])  # fmt: skip
    assert not torch.equal(other.per_question[mask], out.per_question.detach()[mask])


def test_a_videos_views_depend_on_its_own_seed_only():
    frames = _frames()
    pair = augmented_views(frames, ON, [5, 6])
    alone = augmented_views(frames[1:], ON, [6])
    for both, single in zip(pair, alone):
        assert torch.equal(both[1], single[0])
    assert not torch.equal(pair[0][0], pair[1][0])  # the n views of one video differ


def test_with_every_knob_off_a_view_is_the_frames():
    frames = _frames()[0]
    view = random_view(frames, AugmentConfig(n=1, crop_min=1.0, blur_sigma=0.0, noise_std=0.0), view_generator(ON, 0))
    assert torch.equal(view, frames)


def test_blur_of_an_impulse_is_the_normalised_gaussian():
    """Written out: a separable Gaussian blur of a centred impulse is g(x) g(y) with g(k) = exp(-k^2 / 2 s^2) / sum."""
    sigma, size = 1.3, 21
    impulse = torch.zeros(1, 1, size, size)
    impulse[0, 0, size // 2, size // 2] = 1
    radius = math.ceil(3 * sigma)
    k = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(k**2) / (2 * sigma**2))
    g = g / g.sum()
    expected = torch.zeros(size, size)
    centre = slice(size // 2 - radius, size // 2 + radius + 1)
    expected[centre, centre] = g[:, None] * g[None, :]
    torch.testing.assert_close(gaussian_blur(impulse, sigma)[0, 0], expected, rtol=0, atol=1e-7)


def test_noise_has_the_configured_standard_deviation():
    frames = torch.full((4, 3, 56, 56), 0.5)
    cfg = AugmentConfig(n=1, crop_min=1.0, blur_sigma=0.0, noise_std=0.05)
    added = random_view(frames, cfg, view_generator(cfg, 0)) - frames
    # 37,632 draws: the sample deviation is within 1% of 0.05 with overwhelming probability.
    assert abs(float(added.std()) - 0.05) < 5e-4 and abs(float(added.mean())) < 1e-3


@pytest.mark.parametrize(
    ("override", "message"),
    [("n=-1", "critic.augment.n must be >= 0"), ("crop_min=0", r"critic.augment.crop_min must be in \(0, 1\]"),
     ("blur_sigma=-1", "critic.augment.blur_sigma must be >= 0"),
     ("noise_std=-0.1", "critic.augment.noise_std must be >= 0")],
)  # fmt: skip
def test_bad_knobs_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs" / "tiny_drf.yaml", DRFRunConfig, [f"critic.augment.{override}"])
