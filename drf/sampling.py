"""Flow-matching sampling chains whose gradient flows only through a window of steps.

Steps outside the window run the denoiser under ``torch.no_grad()``; steps inside run it with gradient, each wrapped
in activation checkpointing when asked, so memory is that of about one denoiser call whatever the window size. The
scheduler update itself always stays on the autograd tape when its input needs grad, so a gap between windowed
steps passes gradient through the latent (the identity path) while treating that step's velocity as a constant.
With no window the chain is ``WanPipeline``'s own loop, step for step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.checkpoint import checkpoint

from drf.grad_window import GradWindow
from drf.models.base import Cond, VideoGenerator


@dataclass
class Rollout:
    """The result of one chain: final ``latents [B,C,F,h,w]`` (with grad when the window is non-empty).

    ``trajectory`` holds the detached latent entering each step plus the final one, when asked for (GRPO and
    inspection need it; plain DRF does not).
    """

    latents: torch.Tensor
    window: GradWindow
    timesteps: torch.Tensor
    sigmas: torch.Tensor
    trajectory: list[torch.Tensor] = field(default_factory=list)


def _windowed_velocity(
    generator: VideoGenerator, x: torch.Tensor, t: torch.Tensor, cond: Cond, window: GradWindow
) -> torch.Tensor:
    inp = x.detach() if window.detach_input else x
    if window.checkpointing:
        return checkpoint(generator.velocity, inp, t, cond, use_reentrant=False)
    return generator.velocity(inp, t, cond)


def sample(
    generator: VideoGenerator,
    cond: Cond,
    window: GradWindow,
    *,
    latents: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
    keep_trajectory: bool = False,
) -> Rollout:
    """Run ``window.num_steps`` ODE steps from ``latents`` (or fresh noise drawn with ``rng``)."""
    scheduler = generator.scheduler(window.num_steps)
    x = latents if latents is not None else generator.init_latents(len(cond), rng)
    trajectory: list[torch.Tensor] = []
    for i, t in enumerate(scheduler.timesteps):
        if keep_trajectory:
            trajectory.append(x.detach())
        if i in window and torch.is_grad_enabled():
            v = _windowed_velocity(generator, x, t, cond, window)
        else:
            with torch.no_grad():
                v = generator.velocity(x, t, cond)
        x = scheduler.step(v, t, x, return_dict=False)[0]
    if keep_trajectory:
        trajectory.append(x.detach())
    return Rollout(x, window, scheduler.timesteps, scheduler.sigmas, trajectory)
