"""The critic as a ``Reward``: each video's question set answered by the frozen VLM, one column per question."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from critics.base import Critic
from drf.rewards import BuiltInReward, RewardOutput, register_reward

CRITIC = "critic"


class CriticReward:
    """``critic`` in a run's ``rewards:`` list. Reads decoded frames; differentiable (gradients reach the pixels).

    Its output keeps every question (``question_ids``, ``aspects``, weights) and, in ``extras["p_expected"]``, the
    critic's probability of each expected answer; ``drf.rewards.aggregate`` with the questions' aspect weights makes
    it one reward per video.
    """

    name = CRITIC
    reads = "frames"
    differentiable = True

    def __init__(self, critic: Critic) -> None:
        self.critic = critic

    def __call__(
        self, frames: torch.Tensor, prompts: Sequence[str], question_sets: Sequence[Any] = (), **context: Any
    ) -> RewardOutput:
        return RewardOutput.from_critic(self.critic.score(frames.float(), question_sets), question_sets)


register_reward(
    CRITIC,
    BuiltInReward("frames", True, lambda entry, context, where: CriticReward(context.critic), needs_critic=True,
                  help="the VLM critic's answers, aggregated per aspect (questions.aspect_weights)"),
)  # fmt: skip
