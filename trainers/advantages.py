"""Group-relative advantages: how much better each video scored than the others sampled for its prompt."""

from __future__ import annotations

import torch

STD_MODES = ("group", "global", "max_group")


def group_advantages(
    values: torch.Tensor,
    mode: str,
    floor: float,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    population: torch.Tensor | None = None,
) -> torch.Tensor:
    """Advantages ``[P,G]`` of rewards ``values [P,G]`` (P prompts x G samples) relative to their group.

    ``mean``/``std`` ([P,1]) replace the group's own (per-prompt running statistics); ``std`` only matters in group
    mode. ``population`` ([P',G], default ``values``) is what the global and max-group std are taken over: the groups
    of every process. A group whose samples all scored the same carries no signal: its advantages are exactly 0,
    whatever the floor.
    """
    values = values.float()
    population = values if population is None else population.float()
    group_std = values.std(1, unbiased=False, keepdim=True)
    centre = values.mean(1, keepdim=True) if mean is None else mean
    if mode == "group":
        scale = group_std if std is None else std
    elif mode == "global":
        scale = population.std(unbiased=False).expand_as(group_std)
    elif mode == "max_group":
        scale = population.std(1, unbiased=False).max().expand_as(group_std)
    else:
        raise ValueError(f"unknown std mode {mode!r}; choose one of {', '.join(STD_MODES)}")
    advantages = (values - centre) / scale.clamp_min(floor)
    return torch.where(group_std > 0, advantages, torch.zeros_like(advantages))
