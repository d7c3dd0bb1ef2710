"""DiffusionNFT: negative-aware fine-tuning on the forward process — no SDE, no log-probabilities, any sampler.

One optimiser step, per micro-batch of prompts:

1. **Rollouts** from the *old* policy (the sampling policy, an exponential moving average of the trained weights):
   ``group_size`` videos per prompt with the ordinary chain (``model.scheduler`` as configured, no gradient), scored
   by the run's ``rewards:``.
2. **Optimality probabilities** per group: r = 0.5 + 0.5 * clip(A / adv_scale, -1, 1), with A the weighted sum over
   the rewards of each one's group-relative advantage (centred on the group mean, divided by its std, at least
   ``std_floor``). A group whose videos all scored alike gets r = 0.5 everywhere: no preference.
3. **Loss** on forward-noised copies of the final latents x0: x_t = (1 - t) x0 + t eps at ``timesteps_per_step``
   noise levels t, flow-matching target v = eps - x0, and with the current velocity v_theta and the old one v_old
   (both conditional, no guidance) the implicit positive and negative policies
   v+ = (1 - beta) v_old + beta v_theta, v- = (1 + beta) v_old - beta v_theta:
   loss = mean over videos of r ||v+ - v||^2 + (1 - r) ||v- - v||^2 (mean over latent elements).
   Minimising it moves v+ towards the well-scored videos and v- towards the badly scored ones, i.e. v_theta away
   from the latter.
4. After the optimiser step the old policy moves towards the trained weights: old <- decay * old + (1 - decay) * new.

The old policy's weights travel in every checkpoint, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drf.errors import ConfigError, invalid
from drf.frames import frames_from_config
from drf.grad_window import GradWindow
from drf.sampling import sample
from drf.stats import metric_means
from trainers.advantages import group_advantages
from trainers.base import Trainer, finite_all
from trainers.config import RunConfig, TrainerConfig
from trainers.data import stream_seed
from trainers.distributed import gather_rows

MAX_DRAWS = 10_000  # noise-level draws before a range the trained expert barely covers is refused


@dataclass
class NFTConfig(TrainerConfig):
    """The ``nft:`` section: DiffusionNFT's own knobs plus the shared trainer knobs."""

    group_size: int = field(default=4, metadata={"help": "Videos sampled per prompt; rewards are compared within it."})
    beta: float = field(
        default=1.0,
        metadata={"help": "Mixing of the implicit policies: v+ = (1-beta) v_old + beta v_theta, "
                  "v- = (1+beta) v_old - beta v_theta (> 0)."},
    )  # fmt: skip
    old_decay: float = field(
        default=0.9,
        metadata={"help": "The old (sampling) policy follows the trained weights as old <- decay*old + (1-decay)*new "
                  "after every optimiser step; 0 samples with the latest weights."},
    )  # fmt: skip
    adv_scale: float = field(
        default=1.0,
        metadata={"help": "Group-normalised advantages are divided by this before clipping to [-1, 1]: "
                  "r = 0.5 + 0.5 * clip(A / adv_scale, -1, 1)."},
    )  # fmt: skip
    std_floor: float = field(default=1e-3, metadata={"help": "The group std that normalises advantages is at least this."})
    timesteps_per_step: int = field(
        default=2, metadata={"help": "Noise levels t drawn per micro-batch for the forward-noised loss."}
    )
    t_min: float = field(default=0.05, metadata={"help": "Smallest noise level t of the loss (0 < t_min < t_max)."})
    t_max: float = field(default=0.95, metadata={"help": "Largest noise level t of the loss (< 1)."})

    def validate(self) -> None:
        super().validate()
        if self.group_size < 2:
            raise invalid("group_size", f"must be >= 2: rewards are compared within a group (got {self.group_size})")
        if self.timesteps_per_step < 1:
            raise invalid("timesteps_per_step", f"must be >= 1 (got {self.timesteps_per_step})")
        for key in ("beta", "adv_scale", "std_floor"):
            if not getattr(self, key) > 0:
                raise invalid(key, f"must be > 0 (got {getattr(self, key)})")
        if not 0 <= self.old_decay < 1:
            raise invalid("old_decay", f"must be in [0, 1) (got {self.old_decay})")
        if not 0 < self.t_min < self.t_max < 1:
            raise invalid("t_min", f"needs 0 < t_min < t_max < 1 (got {self.t_min}, {self.t_max})")


@dataclass
class NFTRunConfig(RunConfig):
    """`drf train` with an ``nft:`` section: DiffusionNFT fine-tuning of a video generator."""

    name: str = field(default="nft", metadata={"help": "Run name; the run directory is logging.output_dir/name."})
    nft: NFTConfig = field(default_factory=NFTConfig, metadata={"help": "The DiffusionNFT recipe."})

    def validate(self) -> None:
        super().validate()
        self.refuse_grad_window("DiffusionNFT trains on forward-noised samples")


def optimality(advantages: torch.Tensor, adv_scale: float) -> torch.Tensor:
    """Optimality probabilities in [0, 1] of group-relative advantages: 0.5 + 0.5 * clip(A / adv_scale, -1, 1)."""
    return 0.5 + 0.5 * (advantages / adv_scale).clamp(-1, 1)


def nft_loss(
    v_theta: torch.Tensor, v_old: torch.Tensor, target: torch.Tensor, r: torch.Tensor, beta: float
) -> torch.Tensor:
    """r ||v+ - v||^2 + (1 - r) ||v- - v||^2, mean over latent elements, then over videos ``[B]`` -> scalar."""
    positive = (1 - beta) * v_old + beta * v_theta
    negative = (1 + beta) * v_old - beta * v_theta
    dims = tuple(range(1, v_theta.ndim))
    pos = (positive.float() - target.float()).pow(2).mean(dim=dims)
    neg = (negative.float() - target.float()).pow(2).mean(dim=dims)
    return (r * pos + (1 - r) * neg).mean()


class OldPolicy:
    """The sampling policy: a moving average of the trainable parameters, swapped in for rollouts and ``v_old``."""

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        self.params = list(params)
        self.weights = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def follow(self, decay: float) -> None:
        for old, p in zip(self.weights, self.params):
            old.mul_(decay).add_(p.detach(), alpha=1 - decay)

    @contextmanager
    def active(self) -> Iterator[None]:
        """The old weights in the model for the duration (the trained ones restored afterwards, bit for bit)."""
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, old in zip(self.params, self.weights):
                p.copy_(old)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, value in zip(self.params, saved):
                    p.copy_(value)

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        return {"weights": [w.clone() for w in self.weights]}

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        with torch.no_grad():
            for old, saved in zip(self.weights, state["weights"]):
                old.copy_(saved)


class NFTTrainer(Trainer):
    """DiffusionNFT: the shared loop (``trainers.base.Trainer``) around rollouts from the old policy and a
    negative-aware flow-matching update."""

    section = "nft"

    def touched_experts(self) -> set[str]:
        """The loss evaluates the model at noise levels in [t_min, t_max], not at sampling steps."""
        n = self.cfg.nft
        return {self.generator.expert_at(1000 * t) for t in (n.t_min, n.t_max)}

    def setup_recipe(self) -> None:
        self.old = OldPolicy(self.params)

    def recipe_stateful(self) -> dict[str, Any]:
        return {"old_policy": self.old}

    def window_description(self) -> str:
        n = self.cfg.nft
        expert = " where the trained expert denoises" if self.frozen_expert() else ""
        return (
            f"rollouts: {self.cfg.sampling.num_steps} {self.cfg.model.scheduler} steps from the old policy (decay "
            f"{n.old_decay}), {n.group_size} videos per prompt; loss at {n.timesteps_per_step} noise levels in "
            f"[{n.t_min}, {n.t_max}]{expert}, beta {n.beta}"
        )

    @torch.no_grad()
    def rollout(self, step: int, micro: int, timer: Any) -> tuple[torch.Tensor, list[str], torch.Tensor, dict]:
        """Sample and score one micro-batch of groups -> (final latents, prompts per video, r [B], metrics)."""
        cfg, n, acc = self.cfg, self.cfg.nft, self.accelerator
        prompts = self._prompts_for(step, micro)
        videos = [p for p in prompts for _ in range(n.group_size)]
        picked = frames_from_config(cfg.sampling.frames, cfg.model.num_frames, step * n.gradient_accumulation + micro)
        rng = torch.Generator().manual_seed(stream_seed(cfg.seed, step, micro, acc.process_index))
        with timer("sampling"), self.old.active(), self._autocast():
            cond = self.generator.encode_prompts(prompts, cfg.sampling.guidance_scale).repeat_interleave(n.group_size)
            x0 = sample(self.generator, cond, GradWindow.none(cfg.sampling.num_steps), rng=rng).latents.float()
        scored = self.score_videos(videos, x0, picked, timer)
        advantage = sum(
            weight * group_advantages(scored.values[name].float().cpu().reshape(len(prompts), -1), "group", n.std_floor)
            for name, weight in self.rewards.weights.items()
        )
        r = optimality(advantage, n.adv_scale)
        return x0, videos, r.reshape(-1), scored.metrics

    def noise_level(self, rng: torch.Generator) -> torch.Tensor:
        """A noise level t drawn uniformly from [t_min, t_max]; with one Wan 2.2 expert trained, uniformly from the
        part of it that expert denoises (draws routed to the frozen one are drawn again: the loss there would have
        nothing to train)."""
        n = self.cfg.nft
        for _ in range(MAX_DRAWS):
            t = n.t_min + (n.t_max - n.t_min) * torch.rand((), generator=rng)
            if not self.frozen_expert() or self.generator.expert_at(t * 1000) in self.experts:
                return t
        raise ConfigError(f"nft.t_min/t_max [{n.t_min}, {n.t_max}]: the trained expert ({', '.join(self.experts)}) "
                          f"denoises almost none of it ({MAX_DRAWS} draws missed it); widen the range towards it or "
                          "set model.train_experts: both")  # fmt: skip

    def micro_backward(self, step: int, micro: int, x0: torch.Tensor, videos: list[str], r: torch.Tensor) -> torch.Tensor:
        """Backpropagate the NFT loss of one micro-batch, one noise level at a time; returns the mean loss.

        ``v_old`` is computed before ``v_theta`` at each level: swapping the old weights in and out is an in-place
        change of the parameters, which must not happen between a forward with gradient and its backward.
        """
        n, acc = self.cfg.nft, self.accelerator
        rng = torch.Generator().manual_seed(stream_seed(self.cfg.seed + 1, step, micro, acc.process_index))
        cond = self.generator.encode_prompts(videos, 1.0)  # the conditional velocity: no guidance in the loss
        r = r.to(x0.device)
        losses = []
        for _ in range(n.timesteps_per_step):
            t = self.noise_level(rng)
            eps = torch.randn(x0.shape, generator=rng).to(x0.device)
            x_t = (1 - t) * x0 + t * eps
            timestep = (t * 1000).to(x0.device)
            with self._autocast():
                with torch.no_grad(), self.old.active():
                    v_old = self.generator.velocity(x_t, timestep, cond)
                v_theta = self.generator.velocity(x_t, timestep, cond)
            loss = nft_loss(v_theta, v_old, eps - x0, r, n.beta)
            if torch.isfinite(loss.detach()):
                acc.backward(loss / (n.timesteps_per_step * n.gradient_accumulation))
            losses.append(loss.detach())
        return torch.stack(losses).mean()

    def train_step(self, step: int) -> tuple[dict[str, float], bool]:
        n = self.cfg.nft
        started = time.perf_counter()
        timer = self.start_step()
        self.optimizer.zero_grad(set_to_none=True)
        losses, records, optimalities = [], [], []
        for micro in range(n.gradient_accumulation):
            x0, videos, r, metrics = self.rollout(step, micro, timer)
            with timer("backward"):
                losses.append(self.micro_backward(step, micro, x0, videos, r))
            records.append(metrics)
            optimalities.append(r)
        lr = self.lr_scheduler.get_last_lr()[0]
        finite, grad_norm = self.apply_gradients(finite_all(losses))
        if finite:
            self.old.follow(n.old_decay)
        out = metric_means(records)
        # Over every video of the step (each micro-batch, every process): a mean of per-process stds is not the batch's.
        out["nft/optimality_std"] = float(gather_rows(torch.cat(optimalities), self.accelerator).std(unbiased=False))
        out.update(loss=float(torch.stack(losses).float().mean()), grad_norm=grad_norm, lr=lr)
        return self.finish_step(out, finite, timer, started)


def train(cfg: NFTRunConfig, resume: str | None = None) -> Path:
    """Run DiffusionNFT training as configured (continuing from ``resume``: 'latest' or a checkpoint path)."""
    return NFTTrainer(cfg, resume).train()
