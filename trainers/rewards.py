"""A run's rewards, built from its ``rewards:`` list and scored together: one value per video and reward, their
weighted sum, and the metrics every recipe logs (``reward/total``, ``reward/<name>``, and the critic's
``reward/aspect/<aspect>`` and ``reward/q/<question id>``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from critics.augment import AugmentConfig
from critics.reward import CriticReward
from drf.errors import ConfigError
from drf.reward_config import RewardConfig, python_reward
from drf.rewards import REWARDS, BuildContext, Reward, RewardOutput, aggregate, reward_metrics
from prompts.parse import parse_prompt


def camera_motion_of(prompt: str) -> str | None:
    """The camera move a prompt names ("the camera pans left" -> "pan_left"), or None."""
    return parse_prompt(prompt)["camera"]


@dataclass
class Scored:
    """The rewards of one batch of videos."""

    values: dict[str, torch.Tensor]  # name -> [B], with gradient where the reward is differentiable and grad is on
    total: torch.Tensor  # [B]: sum over rewards of weight x value
    metrics: dict[str, float]
    critic: RewardOutput | None = None  # the critic's per-question table, when the run has a critic reward


class RewardSet:
    """The configured rewards of a run, each with its weight, scored on one batch at a time."""

    def __init__(self, entries: list[tuple[RewardConfig, Reward]], aspect_weights: dict[str, float] | None) -> None:
        self.entries = entries
        self.aspect_weights = aspect_weights

    @property
    def weights(self) -> dict[str, float]:
        return {cfg.name: cfg.weight for cfg, _ in self.entries}

    @property
    def reads_frames(self) -> bool:
        """Whether scoring needs decoded frames (else the decode is skipped)."""
        return any(reward.reads == "frames" for _, reward in self.entries)

    def require_differentiable(self, recipe: str) -> None:
        """A recipe that backpropagates through its rewards refuses any that gradients do not pass."""
        for i, (cfg, reward) in enumerate(self.entries):
            if not reward.differentiable:
                raise ConfigError(
                    f"rewards[{i}] ({cfg.name}): {recipe} backpropagates through its rewards and this one is not "
                    "differentiable; set differentiable: true if gradients reach its inputs, or train with grpo or nft"
                )

    def score(
        self,
        prompts: list[str],
        question_sets: list[Any],
        *,
        latents: torch.Tensor,
        frames: torch.Tensor | None = None,
        seeds: list[int] | None = None,
    ) -> Scored:
        """Score videos ``prompts`` from their final ``latents`` and (when a reward reads them) decoded ``frames``;
        ``seeds``: each video's noise seed, from which a reward with randomness (the critic's augmentations) draws."""
        values: dict[str, torch.Tensor] = {}
        metrics: dict[str, float] = {}
        critic = None
        memo: dict = {}  # work shared by the rewards of this call (one geometry-model forward for all geometry.*)
        for cfg, reward in self.entries:
            inputs = latents if reward.reads == "latents" else frames
            if inputs is None:
                raise ValueError(f"reward {cfg.name!r} reads frames and none were decoded")
            out = reward(inputs, prompts, question_sets=question_sets, memo=memo, seeds=seeds)
            if isinstance(reward, CriticReward):
                total, per_aspect = aggregate(out, self.aspect_weights)
                critic = out
                detail = reward_metrics(out, per_aspect, total)
                detail.pop("reward/total")
                metrics.update(detail)
            else:
                total, _ = aggregate(out)
            values[cfg.name] = total
            metrics[f"reward/{cfg.name}"] = float(total.detach().float().mean())
        weighted = sum(cfg.weight * values[cfg.name].float() for cfg, _ in self.entries)
        metrics["reward/total"] = float(weighted.detach().mean())
        return Scored(values, weighted, metrics, critic)


def build_rewards(
    rewards: list[RewardConfig],
    critic: Any,
    aspect_weights: dict[str, float] | None,
    device: Any,
    augment: AugmentConfig | None = None,
) -> RewardSet:
    """The run's ``rewards:`` as ``Reward`` objects (``critic``: the loaded critic, or None when none is listed;
    ``augment``: the critic's random views, ``critic.augment``)."""
    context = BuildContext(critic=critic, device=device, camera_of=camera_motion_of, critic_augment=augment)
    entries: list[tuple[RewardConfig, Reward]] = []
    for i, cfg in enumerate(rewards):
        if cfg.python:
            reward: Reward = python_reward(cfg, f"rewards[{i}].python")
        else:  # RewardConfig.validate refuses a name that is not registered
            reward = REWARDS[cfg.name].build(cfg, context, f"rewards[{i}]")
        entries.append((cfg, reward))
    return RewardSet(entries, aspect_weights)
