"""The critic as a ``Reward``: each video's question set answered by the frozen VLM, one column per question."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from critics.augment import AugmentConfig, augmented_views
from critics.base import Critic
from drf.rewards import BuiltInReward, RewardOutput, register_reward

CRITIC = "critic"


class CriticReward:
    """``critic`` in a run's ``rewards:`` list. Reads decoded frames; differentiable (gradients reach the pixels).

    Its output keeps every question (``question_ids``, ``aspects``, weights) and, in ``extras["p_expected"]``, the
    critic's probability of each expected answer; ``drf.rewards.aggregate`` with the questions' aspect weights makes
    it one reward per video. With ``augment.n`` > 0 each question's reward and probability are the means over that
    many random views of the video (``critics.augment``), drawn from each video's seed in the ``seeds`` context (the
    trainers pass each video's noise seed; without it, its place in the batch).
    """

    name = CRITIC
    reads = "frames"
    differentiable = True

    def __init__(self, critic: Critic, augment: AugmentConfig | None = None) -> None:
        self.critic = critic
        self.augment = augment or AugmentConfig()

    def __call__(
        self,
        frames: torch.Tensor,
        prompts: Sequence[str],
        question_sets: Sequence[Any] = (),
        seeds: Sequence[int] | None = None,
        **context: Any,
    ) -> RewardOutput:
        frames = frames.float()
        if self.augment.n == 0:
            return RewardOutput.from_critic(self.critic.score(frames, question_sets), question_sets)
        seeds = list(range(len(frames))) if seeds is None else list(seeds)
        outputs = [self.critic.score(view, question_sets) for view in augmented_views(frames, self.augment, seeds)]
        first = RewardOutput.from_critic(outputs[0], question_sets)
        return dataclasses.replace(
            first,
            per_question=torch.stack([o.rewards for o in outputs]).mean(0),
            extras={"p_expected": torch.stack([o.p_expected for o in outputs]).mean(0)},
        )


register_reward(
    CRITIC,
    BuiltInReward("frames", True, lambda entry, context, where: CriticReward(context.critic, context.critic_augment),
                  needs_critic=True, help="the VLM critic's answers, aggregated per aspect (questions.aspect_weights)"),
)  # fmt: skip
