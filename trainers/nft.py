"""DiffusionNFT: negative-aware fine-tuning on the forward process — no SDE, no log-probabilities, any sampler.

One optimiser step, as the authors' training script (NVlabs/DiffusionNFT, ``scripts/train_nft_sd3.py``) runs it:

1. **Rollouts** from the *old* policy (the sampling policy, a moving average of the trained weights): ``group_size``
   videos per prompt for every micro-batch, with the ordinary chain (``model.scheduler``, no gradient) at guidance
   ``rollout_guidance`` (1: the conditional velocity, the policy the loss trains), scored by the run's ``rewards:``.
2. **Optimality probabilities** over the whole step: each reward's advantage is centred on its group's mean and
   divided by the std of every video of the step on every process (``std_mode: global``, at least ``std_floor``);
   A is their weighted sum and r = 0.5 + 0.5 * clip(A / adv_clip, -1, 1). A group that scored alike gets r = 0.5.
3. **Loss** for each video at ``int(sampling.num_steps * timestep_fraction)`` of its sampler's noise levels (t,
   timestep) in its own random order: x_t = (1 - t) x0 + t eps, target v = eps - x0, the implicit policies
   v+ = (1 - beta) v_old + beta v_theta and v- = (1 + beta) v_old - beta v_theta (velocities at the rollout
   guidance), each scored by the x0-prediction error e = t (v - v±) squared over its stop-gradient mean |e| per video
   (adaptive weighting), and
   loss = mean over videos of (adv_clip / beta) (r err+ + (1 - r) err-) + kl_weight ||v_theta - v_ref||^2,
   v_ref the base model's velocity (LoRA off). Minimising it moves v+ towards the well-scored videos and v- towards
   the badly scored ones, i.e. v_theta away from the latter.
4. After the optimiser step the old policy moves towards the trained weights: old <- d old + (1 - d) new with
   d = min(old_decay_rate * (n - old_decay_start), old_decay_max) after n optimiser steps (0 before the start).

The old policy's weights travel in every checkpoint, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from drf.errors import ConfigError, invalid
from drf.frames import frames_from_config
from drf.grad_window import GradWindow
from drf.models.base import Cond
from drf.sampling import sample
from drf.stats import metric_means
from trainers.advantages import group_advantages
from trainers.base import Trainer, finite_all
from trainers.config import RunConfig, TrainerConfig
from trainers.data import stream_seed
from trainers.distributed import gather_rows
from trainers.weights import adapters_disabled

MAX_DRAWS = 10_000  # noise-level draws before a range the trained expert barely covers is refused
WEIGHT_FLOOR = 1e-5  # the authors' lower bound on the adaptive weight (mean |x0-prediction error| of a video)


@dataclass
class NFTConfig(TrainerConfig):
    """The ``nft:`` section: DiffusionNFT's own knobs plus the shared trainer knobs. Defaults are the authors'."""

    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "adv_scale": "is now adv_clip: r = 0.5 + 0.5 * clip(A / adv_clip, -1, 1), the authors' 5 by default",
        "old_decay": "is now a schedule: old_decay_max, old_decay_rate, old_decay_start (a constant decay c is "
        "old_decay_max: c, old_decay_rate: 1)",
        "timesteps_per_step": "is now timestep_fraction: each video trains int(sampling.num_steps * fraction) noise "
        "levels",
    }

    group_size: int = field(default=4, metadata={"help": "Videos sampled per prompt; rewards are compared within it."})
    beta: float = field(
        default=1.0,
        metadata={"help": "Mixing of the implicit policies: v+ = (1-beta) v_old + beta v_theta, "
                  "v- = (1+beta) v_old - beta v_theta (> 0)."},
    )  # fmt: skip
    rollout_guidance: float = field(
        default=1.0,
        metadata={"help": "Classifier-free guidance of the rollouts and of every velocity in the loss (v_old, "
                  "v_theta, v_ref), so the loss names the policy that sampled; 1 = none, as the authors. "
                  "sampling.guidance_scale is the evaluation's."},
    )  # fmt: skip
    std_mode: Literal["global", "group", "max_group"] = field(
        default="global",
        metadata={"help": "Advantage normaliser: the std over every video of the step on every process (the "
                  "authors'), each group's own, or the largest group std."},
    )  # fmt: skip
    std_floor: float = field(
        default=1e-4, metadata={"help": "The std that normalises advantages is at least this (the authors add 1e-4)."}
    )
    adv_clip: float = field(
        default=5.0,
        metadata={"help": "Advantages are clipped to [-adv_clip, adv_clip] and mapped to r = 0.5 + 0.5 * A / "
                  "adv_clip; the loss is scaled by adv_clip / beta (the authors' adv_clip_max)."},
    )  # fmt: skip
    adaptive_weighting: bool = field(
        default=True,
        metadata={"help": "Score each implicit policy by its x0-prediction error squared over its own stop-gradient "
                  "mean absolute error per video, as the authors; off: plain velocity MSE."},
    )  # fmt: skip
    kl_weight: float = field(
        default=1e-4,
        metadata={"help": "Weight of the mean squared velocity difference to the base model (LoRA disabled); "
                  "lora only, 0 = none."},
    )  # fmt: skip
    old_decay_max: float = field(
        default=0.5,
        metadata={"help": "After n optimiser steps the old (sampling) policy follows the trained weights as "
                  "old <- d*old + (1-d)*new, d = min(old_decay_rate * (n - old_decay_start), old_decay_max)."},
    )  # fmt: skip
    old_decay_rate: float = field(default=1e-3, metadata={"help": "Rise of the old-policy decay d per step."})
    old_decay_start: int = field(
        default=0, metadata={"help": "Steps before the decay starts to rise (d = 0: old = new until then)."}
    )
    timesteps: Literal["sampler", "uniform"] = field(
        default="sampler",
        metadata={"help": "Noise levels of the loss: sampler: each video its own of the rollout schedule's steps, "
                  "without repeats (the authors'); uniform: t drawn per video in [t_min, t_max]."},
    )  # fmt: skip
    timestep_fraction: float = field(
        default=0.99,
        metadata={"help": "Each video trains int(sampling.num_steps * this) noise levels (at least 1), one "
                  "backward pass each."},
    )  # fmt: skip
    t_min: float = field(default=0.05, metadata={"help": "Smallest noise level t with timesteps: uniform (>= 0)."})
    t_max: float = field(default=0.95, metadata={"help": "Largest noise level t with timesteps: uniform (<= 1)."})

    def validate(self) -> None:
        super().validate()
        if self.group_size < 2:
            raise invalid("group_size", f"must be >= 2: rewards are compared within a group (got {self.group_size})")
        for key in ("beta", "adv_clip", "std_floor", "rollout_guidance"):
            if not getattr(self, key) > 0:
                raise invalid(key, f"must be > 0 (got {getattr(self, key)})")
        if not 0 < self.timestep_fraction <= 1:
            raise invalid("timestep_fraction", f"must be in (0, 1] (got {self.timestep_fraction})")
        if not 0 <= self.old_decay_max < 1:
            raise invalid("old_decay_max", f"must be in [0, 1) (got {self.old_decay_max})")
        if self.old_decay_rate < 0 or self.old_decay_start < 0:
            raise invalid("old_decay_rate", f"and old_decay_start must be >= 0 (got {self.old_decay_rate}, "
                          f"{self.old_decay_start})")  # fmt: skip
        if self.timesteps == "uniform" and not 0 <= self.t_min < self.t_max <= 1:
            raise invalid("t_min", f"needs 0 <= t_min < t_max <= 1 (got {self.t_min}, {self.t_max})")
        if self.timesteps == "sampler" and (self.t_min, self.t_max) != (0.05, 0.95):
            raise invalid("t_min", "and t_max are read with timesteps: uniform only (sampler levels are the rollout "
                          "schedule's)")  # fmt: skip
        if self.kl_weight < 0:
            raise invalid("kl_weight", f"must be >= 0 (got {self.kl_weight})")
        if self.kl_weight > 0 and self.trainable != "lora":
            raise invalid("kl_weight", "needs trainable: lora (the base model is the transformer with its LoRA "
                          "disabled); set nft.kl_weight: 0 for full fine-tuning")  # fmt: skip


@dataclass
class NFTRunConfig(RunConfig):
    """`drf train` with an ``nft:`` section: DiffusionNFT fine-tuning of a video generator."""

    name: str = field(default="nft", metadata={"help": "Run name; the run directory is logging.output_dir/name."})
    nft: NFTConfig = field(default_factory=NFTConfig, metadata={"help": "The DiffusionNFT recipe."})

    def validate(self) -> None:
        super().validate()
        self.refuse_grad_window("DiffusionNFT trains on forward-noised samples")


def optimality(
    grids: dict[str, torch.Tensor],
    weights: dict[str, float],
    n: NFTConfig,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Optimality probabilities r ``[N,G]`` in [0, 1] of rewards ``grids[name] [N,G]`` (N groups of G videos).

    Each reward's advantage is centred on its group's mean and scaled by ``n.std_mode``'s std (``gather`` returns the
    rows of every process, for the global and max-group std); A is their weighted sum and
    r = 0.5 + 0.5 * clip(A / adv_clip, -1, 1). A group that scored alike gets A = 0, r = 0.5: no preference.
    """
    combined = 0
    for name, weight in weights.items():
        grid = grids[name].detach().float().cpu()
        population = grid if gather is None or n.std_mode == "group" else gather(grid)
        combined = combined + weight * group_advantages(grid, n.std_mode, n.std_floor, population=population)
    return 0.5 + 0.5 * (combined / n.adv_clip).clamp(-1, 1)


def old_decay(steps_done: int, n: NFTConfig) -> float:
    """The old-policy decay after ``steps_done`` optimiser steps: 0 before ``old_decay_start``, then rising by
    ``old_decay_rate`` a step up to ``old_decay_max`` (the authors' decay_type 1 is rate 0.001, max 0.5)."""
    if steps_done < n.old_decay_start:
        return 0.0
    return min(n.old_decay_rate * (steps_done - n.old_decay_start), n.old_decay_max)


def regression_error(v: torch.Tensor, target: torch.Tensor, t: torch.Tensor, adaptive: bool) -> torch.Tensor:
    """Per-video error ``[B]`` of velocity ``v`` against the flow-matching ``target`` at noise levels ``t [B]``.

    Adaptive (the authors'): the x0-prediction error e = x_t - t v - x0 = t (target - v), squared over its own
    stop-gradient mean |e| (at least 1e-5), so every video pulls with a comparable force whatever its error's size;
    else the plain mean squared velocity error.
    """
    dims = tuple(range(1, v.ndim))
    diff = target.float() - v.float()
    if not adaptive:
        return diff.pow(2).mean(dim=dims)
    err = t.float().view(-1, *([1] * (v.ndim - 1))) * diff
    weight = err.detach().abs().mean(dim=dims).clamp_min(WEIGHT_FLOOR)
    return err.pow(2).mean(dim=dims) / weight


def nft_loss(
    v_theta: torch.Tensor,
    v_old: torch.Tensor,
    target: torch.Tensor,
    t: torch.Tensor,
    r: torch.Tensor,
    n: NFTConfig,
    v_ref: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(adv_clip / beta) (r err(v+) + (1 - r) err(v-)) + kl_weight ||v_theta - v_ref||^2, means over latent elements
    and videos ``[B]`` -> (loss, the KL term's mean squared difference; 0 without ``v_ref``)."""
    positive = (1 - n.beta) * v_old + n.beta * v_theta
    negative = (1 + n.beta) * v_old - n.beta * v_theta
    pos = regression_error(positive, target, t, n.adaptive_weighting)
    neg = regression_error(negative, target, t, n.adaptive_weighting)
    loss = (n.adv_clip / n.beta * (r * pos + (1 - r) * neg)).mean()
    kl = torch.zeros((), device=loss.device)
    if v_ref is not None:
        kl = (v_theta.float() - v_ref.float()).pow(2).mean(dim=tuple(range(1, v_theta.ndim))).mean()
        loss = loss + n.kl_weight * kl
    return loss, kl


def velocity_per_video(generator: Any, x: torch.Tensor, timestep: torch.Tensor, cond: Cond) -> torch.Tensor:
    """The velocity of each video at its own ``timestep [B]``: one call when one transformer runs every noise level;
    with two experts (Wan 2.2), one call per distinct timestep, since each call picks one expert for its batch."""
    if len(generator.expert_names()) == 1:
        return generator.velocity(x, timestep, cond)
    values, rows_of = [], []
    for value in timestep.unique():
        rows = (timestep == value).nonzero().flatten()
        negative = None if cond.negative_embeds is None else cond.negative_embeds[rows]
        values.append(generator.velocity(x[rows], value, Cond(cond.embeds[rows], negative, cond.guidance_scale)))
        rows_of.append(rows)
    return torch.cat(values)[torch.cat(rows_of).argsort()]


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

    def trained_steps(self) -> set[int]:
        """With sampler noise levels any step of the rollout schedule may be a video's."""
        return set(range(self.cfg.sampling.num_steps))

    def touched_experts(self) -> set[str]:
        """The experts of the loss's noise levels: the sampler's steps, or the ends of [t_min, t_max]."""
        n = self.cfg.nft
        if n.timesteps == "sampler":
            return super().touched_experts()
        return {self.generator.expert_at(1000 * t) for t in (n.t_min, n.t_max)}

    def setup_recipe(self) -> None:
        self.old = OldPolicy(self.params)

    def recipe_stateful(self) -> dict[str, Any]:
        return {"old_policy": self.old}

    def levels_per_video(self) -> int:
        return max(1, int(self.cfg.sampling.num_steps * self.cfg.nft.timestep_fraction))

    def window_description(self) -> str:
        n = self.cfg.nft
        where = "of the rollout schedule" if n.timesteps == "sampler" else f"uniform in [{n.t_min}, {n.t_max}]"
        expert = " where the trained expert denoises" if self.frozen_expert() else ""
        return (
            f"rollouts: {self.cfg.sampling.num_steps} {self.cfg.model.scheduler} steps from the old policy at guidance "
            f"{n.rollout_guidance}, {n.group_size} videos per prompt; loss at {self.levels_per_video()} noise levels "
            f"per video {where}{expert}, beta {n.beta}, {'adaptive' if n.adaptive_weighting else 'plain'} weighting, "
            f"KL weight {n.kl_weight}"
        )

    @torch.no_grad()
    def rollout(self, step: int, micro: int, timer: Any) -> tuple[torch.Tensor, list[str], dict, dict]:
        """Sample and score one micro-batch of groups -> (final latents, prompts per video, each reward as a grid
        ``[P,G]``, metrics)."""
        cfg, n, acc = self.cfg, self.cfg.nft, self.accelerator
        prompts = self._prompts_for(step, micro)
        videos = [p for p in prompts for _ in range(n.group_size)]
        picked = frames_from_config(cfg.sampling.frames, cfg.model.num_frames, step * n.gradient_accumulation + micro)
        rng = torch.Generator().manual_seed(stream_seed(cfg.seed, step, micro, acc.process_index))
        with timer("sampling"), self.old.active(), self._autocast():
            cond = self.generator.encode_prompts(prompts, n.rollout_guidance).repeat_interleave(n.group_size)
            x0 = sample(self.generator, cond, GradWindow.none(cfg.sampling.num_steps), rng=rng).latents.float()
        seeds = [stream_seed(cfg.seed, step, micro, acc.process_index, i) for i in range(len(videos))]
        scored = self.score_videos(videos, x0, picked, timer, seeds)
        grids = {name: v.detach().float().cpu().reshape(len(prompts), -1) for name, v in scored.values.items()}
        return x0, videos, grids, scored.metrics

    def noise_levels(self, rng: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each video's noise levels -> (t ``[B,K]`` mixing x0 and noise, the transformer's timesteps ``[B,K]``).

        sampler: K distinct steps of the rollout schedule per video in a random order, each the (sigma, timestep)
        pair the sampler feeds the model there; uniform: t in [t_min, t_max], timestep 1000 t.
        """
        n, k = self.cfg.nft, self.levels_per_video()
        if n.timesteps == "uniform":
            t = torch.stack([self.uniform_level(rng) for _ in range(batch * k)]).view(batch, k)
            return t, 1000 * t
        steps = torch.tensor(self.expert_steps if self.frozen_expert() else range(self.cfg.sampling.num_steps))
        k = min(k, len(steps))
        scheduler = self.generator.scheduler(self.cfg.sampling.num_steps)
        order = steps[torch.stack([torch.randperm(len(steps), generator=rng)[:k] for _ in range(batch)])]
        return scheduler.sigmas.cpu().float()[order], scheduler.timesteps.cpu()[order]

    def uniform_level(self, rng: torch.Generator) -> torch.Tensor:
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

    def micro_backward(
        self, step: int, micro: int, x0: torch.Tensor, videos: list[str], r: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backpropagate the NFT loss of one micro-batch, one noise level per video at a time -> (mean loss, mean
        squared velocity difference to the base model).

        ``v_old`` is computed before ``v_theta`` at each level: swapping the old weights in and out is an in-place
        change of the parameters, which must not happen between a forward with gradient and its backward.
        """
        n, acc, dev = self.cfg.nft, self.accelerator, x0.device
        rng = torch.Generator().manual_seed(stream_seed(self.cfg.seed + 1, step, micro, acc.process_index))
        cond = self.generator.encode_prompts(videos, n.rollout_guidance)  # the policy that sampled the rollouts
        r = r.to(dev)
        sigmas, timesteps = self.noise_levels(rng, len(videos))
        losses, kls = [], []
        for level in range(sigmas.shape[1]):
            t, timestep = sigmas[:, level].to(dev), timesteps[:, level].to(dev)
            eps = torch.randn(x0.shape, generator=rng).to(dev)
            per_video = t.view(-1, *([1] * (x0.ndim - 1)))
            x_t = (1 - per_video) * x0 + per_video * eps
            with self._autocast():
                with torch.no_grad():
                    with self.old.active():
                        v_old = velocity_per_video(self.generator, x_t, timestep, cond)
                    v_ref = None
                    if n.kl_weight > 0:
                        with adapters_disabled(self.transformer):
                            v_ref = velocity_per_video(self.generator, x_t, timestep, cond)
                v_theta = velocity_per_video(self.generator, x_t, timestep, cond)
            loss, kl = nft_loss(v_theta, v_old, eps - x0, t, r, n, v_ref)
            if torch.isfinite(loss.detach()):
                acc.backward(loss / (sigmas.shape[1] * n.gradient_accumulation))
            losses.append(loss.detach())
            kls.append(kl.detach())
        return torch.stack(losses).mean(), torch.stack(kls).mean()

    def train_step(self, step: int) -> tuple[dict[str, float], bool]:
        """Sample every micro-batch, turn the step's rewards into optimality probabilities together (the global std
        spans them all), then backpropagate each micro-batch's loss and move the old policy."""
        n = self.cfg.nft
        started = time.perf_counter()
        timer = self.start_step()
        self.optimizer.zero_grad(set_to_none=True)
        rollouts = [self.rollout(step, micro, timer) for micro in range(n.gradient_accumulation)]
        grids = {name: torch.cat([grid[name] for _, _, grid, _ in rollouts]) for name in self.rewards.weights}
        r = optimality(grids, self.rewards.weights, n, gather=lambda rows: gather_rows(rows, self.accelerator))
        losses, kls = [], []
        with timer("backward"):
            for micro, ((x0, videos, _, _), r_micro) in enumerate(zip(rollouts, r.reshape(len(rollouts), -1))):
                loss, kl = self.micro_backward(step, micro, x0, videos, r_micro)
                losses.append(loss)
                kls.append(kl)
        lr = self.lr_scheduler.get_last_lr()[0]
        finite, grad_norm = self.apply_gradients(finite_all(losses))
        decay = old_decay(step + 1, n)
        if finite:
            self.old.follow(decay)
        out = metric_means([metrics for *_, metrics in rollouts])
        everywhere = gather_rows(r.reshape(-1), self.accelerator)
        out.update(
            {
                "loss": float(torch.stack(losses).float().mean()),
                "grad_norm": grad_norm,
                "lr": lr,
                "nft/kl": float(torch.stack(kls).float().mean()),
                "nft/old_decay": decay,
                # Over every video of the step on every process: a mean of per-process stds is not the batch's.
                "nft/optimality_std": float(everywhere.std(unbiased=False)),
                "nft/optimality_saturated": float(((everywhere == 0) | (everywhere == 1)).float().mean()),
            }
        )
        return self.finish_step(out, finite, timer, started)


def train(cfg: NFTRunConfig, resume: str | None = None) -> Path:
    """Run DiffusionNFT training as configured (continuing from ``resume``: 'latest' or a checkpoint path)."""
    return NFTTrainer(cfg, resume).train()
