"""Flow-matching sampling chains whose gradient flows only through a window of steps.

Steps outside the window run the denoiser under ``torch.no_grad()``; steps inside run it with gradient, each wrapped
in activation checkpointing when asked, so memory is that of about one denoiser call whatever the window size. The
scheduler update itself always stays on the autograd tape when its input needs grad, so a gap between windowed
steps passes gradient through the latent (the identity path) while treating that step's velocity as a constant.
With no window the chain is the family's pipeline loop (``WanPipeline``, ``LTXPipeline``), step for step. An x0 window
(``GradWindow.predict_x0``) ends the chain at its step with the predicted clean latent instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils.checkpoint import checkpoint

from drf.errors import invalid
from drf.frames import FramesConfig
from drf.grad_window import GradWindow, GradWindowConfig
from drf.models.base import Cond, VideoGenerator


@dataclass
class Rollout:
    """The result of one chain: final ``latents [B,C,F,h,w]`` (with grad when the window is non-empty), or for an x0
    window the clean latent predicted at its step.

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
    """Run ``window.num_steps`` ODE steps from ``latents`` (or fresh noise drawn with ``rng``); an x0 window stops at
    its step ``i`` and returns x0 = x_i - sigma_i * v_i, the one denoiser call there carrying the gradient."""
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
        if window.predict_x0 and i in window:
            # In float32 and back to the velocity's dtype, as the scheduler's own step does.
            x = (x.float() - scheduler.sigmas[i].to(x.device) * v.float()).to(v.dtype)
            break
        x = scheduler.step(v, t, x, return_dict=False)[0]
    if keep_trajectory:
        trajectory.append(x.detach())
    return Rollout(x, window, scheduler.timesteps, scheduler.sigmas, trajectory)


SDE_KINDS = ("flow_grpo", "dance_grpo", "cps")


@dataclass
class SDEStep:
    """One stochastic step: ``x_next``, its Gaussian ``log_prob`` [B] (fp32, mean over non-batch dims), ``mean``, ``std``."""

    x_next: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def sde_step(
    v: torch.Tensor,
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    sigma_next: float | torch.Tensor,
    kind: str = "flow_grpo",
    noise_level: float = 0.7,
    noise: torch.Tensor | None = None,
    x_next: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> SDEStep:
    """A rectified-flow step turned into a Gaussian transition so policy-gradient methods get a log-probability.

    ``flow_grpo``: std_t = a*sqrt(sigma/(1-sigma)) (sigma=1 replaced by sigma_next), mean = x + [v + std_t^2/(2 sigma)
    (x + (1-sigma) v)] d_sigma, x_next = mean + std_t*sqrt(-d_sigma)*eps. ``dance_grpo``: the same drift with a constant
    eta = a, std = a*sqrt(-d_sigma). ``cps`` (coefficient-preserving): std = sigma_next*sin(a*pi/2) and the mean
    re-mixes the predicted clean sample and noise so the marginal noise level is kept. With ``noise_level`` -> 0 every
    kind is the Euler step. Pass ``x_next`` to score a stored transition (the GRPO ratio) instead of drawing one.
    ``log_prob`` is the Gaussian's for flow_grpo and dance_grpo, and -(x_next - mean)^2 for cps (flow_grpo's CPS
    convention, which its clip ranges assume).
    Arithmetic is in float32 whatever the model dtype, since log-prob differences are tiny.
    """
    if kind not in SDE_KINDS:
        raise ValueError(f"unknown SDE kind {kind!r}; choose one of {', '.join(SDE_KINDS)}")
    v, x = v.float(), x.float()
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    sigma_next = torch.as_tensor(sigma_next, dtype=torch.float32, device=x.device)
    d_sigma = sigma_next - sigma
    if kind == "cps":
        std = sigma_next * math.sin(noise_level * math.pi / 2)
        x0 = x - sigma * v
        eps_hat = x + (1 - sigma) * v
        mean = x0 * (1 - sigma_next) + eps_hat * torch.sqrt(torch.clamp(sigma_next**2 - std**2, min=0))
    else:
        if kind == "flow_grpo":
            denominator = 1 - torch.where(sigma >= 1, sigma_next, sigma)
            std_t = noise_level * torch.sqrt(sigma / denominator)
        else:
            std_t = torch.as_tensor(noise_level, dtype=torch.float32, device=x.device)
        mean = x + (v + std_t**2 / (2 * sigma) * (x + (1 - sigma) * v)) * d_sigma
        std = std_t * torch.sqrt(-d_sigma)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    if x_next is None:
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
        x_next = mean + std * noise.float()
    x_next = x_next.float()
    if kind == "cps":
        # flow_grpo's CPS convention: the squared distance alone. The Gaussian's 1/(2 std^2) would make log-prob
        # differences (and so the clipped ratios) ~1/(2 std^2) larger than the clip range was tuned for.
        log_prob = -((x_next.detach() - mean) ** 2)
    else:
        log_prob = -((x_next.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return SDEStep(x_next, log_prob.mean(dim=tuple(range(1, log_prob.ndim))), mean, std)


@dataclass
class Transition:
    """A stored stochastic step of a rollout: enough to recompute its log-probability under new weights."""

    step: int
    timestep: torch.Tensor
    sigma: torch.Tensor
    sigma_next: torch.Tensor
    latents: torch.Tensor
    next_latents: torch.Tensor
    log_prob: torch.Tensor


@dataclass
class SDERollout:
    """Final ``latents`` of a mixed ODE/SDE chain and the stochastic ``transitions``, in step order."""

    latents: torch.Tensor
    transitions: list[Transition]


@torch.no_grad()
def sample_sde(
    generator: VideoGenerator,
    cond: Cond,
    window: GradWindow,
    *,
    kind: str = "flow_grpo",
    noise_level: float = 0.7,
    latents: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> SDERollout:
    """Roll out with SDE steps inside ``window`` and Euler ODE steps elsewhere (MixGRPO), without gradient.

    The policy-gradient update later recomputes each stored transition's log-probability with gradient
    (``sde_step(..., x_next=t.next_latents)``), so nothing here keeps a graph.
    """
    scheduler = generator.scheduler(window.num_steps)
    sigmas = scheduler.sigmas.float()
    x = latents if latents is not None else generator.init_latents(len(cond), rng)
    x = x.float()
    transitions: list[Transition] = []
    for i, t in enumerate(scheduler.timesteps):
        v = generator.velocity(x, t, cond).float()
        if i in window:
            step = sde_step(v, x, sigmas[i], sigmas[i + 1], kind=kind, noise_level=noise_level, generator=rng)
            transitions.append(Transition(i, t, sigmas[i], sigmas[i + 1], x, step.x_next, step.log_prob))
            x = step.x_next
        else:
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    return SDERollout(x, transitions)


@dataclass
class SamplingConfig:
    """The sampling chain: steps, guidance, gradient window and frames passed to rewards."""

    num_steps: int = field(default=20, metadata={"help": "Denoising steps per video."})
    guidance_scale: float = field(default=5.0, metadata={"help": "Classifier-free guidance scale; <= 1 disables CFG."})
    grad_window: GradWindowConfig = field(
        default_factory=GradWindowConfig, metadata={"help": "Which steps carry gradient."}
    )
    frames: FramesConfig = field(default_factory=FramesConfig, metadata={"help": "Which frames rewards see."})

    def validate(self) -> None:
        if self.num_steps < 1:
            raise invalid("num_steps", f"must be >= 1 (got {self.num_steps})")
        if self.guidance_scale < 0:
            raise invalid("guidance_scale", f"must be >= 0 (got {self.guidance_scale})")
        window = self.grad_window
        if window.kind != "steps" and window.k > self.num_steps:
            raise invalid("grad_window.k", f"must be <= num_steps (got {window.k}; num_steps is {self.num_steps})")
        bad = [i for i in window.steps if not 0 <= i < self.num_steps]
        if bad:
            raise invalid("grad_window.steps", f"index {bad[0]} is outside 0..{self.num_steps - 1} (num_steps)")
