"""Pixel gradients of critic rewards match finite differences; quantized critics still pass gradients to inputs."""

from __future__ import annotations

import pytest
import torch

from prompts.schema import Question, QuestionSet


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_pixel_gradient_matches_central_differences_in_float64(family, make_critic):
    critic = make_critic(family, dtype="float64")
    qsets = [
        QuestionSet(
            "a red cube",
            [
                Question("red", "alignment", "binary", "Is there a red cube?", "yes"),
                Question("caption", "quality", "dense", "Describe the video.", "a red cube"),
            ],
        )
    ]
    frames = torch.rand(1, 2, 3, 56, 56, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    direction = torch.randn(frames.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def total(x: torch.Tensor) -> torch.Tensor:
        return critic.score(x, qsets).rewards.sum()

    x = frames.clone().requires_grad_(True)
    total(x).backward()
    analytic = (x.grad * direction).sum()
    # Qwen's vision rotary runs in float32 internally, so smaller steps only add noise; measured relative
    # error at this step: 5e-4 (Qwen2-VL), 2.5e-4 (LLaVA).
    eps = 1e-3
    with torch.no_grad():
        numeric = (total(frames + eps * direction) - total(frames - eps * direction)) / (2 * eps)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.allclose(analytic, numeric, rtol=5e-3, atol=1e-6), (float(analytic), float(numeric))


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_critic_still_passes_gradients_to_pixels(quantization, make_critic, questions):
    pytest.importorskip("bitsandbytes")
    critic = make_critic("qwen2_5_vl", quantization=quantization)
    frames = torch.rand(1, 2, 3, 56, 56, requires_grad=True)
    out = critic.score(frames, questions[1:])
    out.rewards.sum().backward()
    assert torch.isfinite(out.rewards).all()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0


def test_4bit_critic_scores_without_then_with_gradients(make_critic, questions):
    """The trainers' order: an evaluation without gradients, then training steps with them. On CPUs with AVX512-BF16
    bitsandbytes would repack the 4-bit weights on the first call without gradients; the critic must keep scoring,
    and its rewards and gradients must equal those of a critic that never ran without gradients."""
    pytest.importorskip("bitsandbytes")
    frames = torch.rand(1, 2, 3, 56, 56, generator=torch.Generator().manual_seed(0))

    def reward_and_gradient(critic):
        x = frames.clone().requires_grad_(True)
        rewards = critic.score(x, questions[1:]).rewards
        rewards.sum().backward()
        return rewards.detach(), x.grad

    evaluated = make_critic("qwen2_5_vl", quantization="4bit")
    with torch.no_grad():
        before = evaluated.score(frames, questions[1:]).rewards
    rewards, grad = reward_and_gradient(evaluated)
    fresh_rewards, fresh_grad = reward_and_gradient(make_critic("qwen2_5_vl", quantization="4bit"))
    assert torch.equal(before, rewards) and torch.equal(rewards, fresh_rewards)
    assert torch.equal(grad, fresh_grad) and grad.abs().sum() > 0
