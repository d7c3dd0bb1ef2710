"""GRPO for flow-matching video generators: rewards as black boxes, a clipped policy-gradient step on SDE transitions.

One step, per micro-batch of prompts: every prompt is sampled ``group_size`` times (optionally from one shared initial
noise) with SDE steps inside a MixGRPO window and Euler steps elsewhere, all without gradient. The run's rewards
(``rewards:``) score them — the critic on decoded frames, geometry rewards straight from the final latents (nothing is
decoded when no reward reads frames). Each named reward becomes an advantage relative to its group (normalised by the group's, the batch's or the
largest group's std, with a floor), the advantages are weighted, summed and clipped. Then, for ``inner_epochs``
updates, every stored transition's log-probability is recomputed under the current policy and the clipped-ratio loss
plus a KL term (squared distance of the step means to the frozen base model's, over 2 std^2, as Flow-GRPO) is
backpropagated one transition at a time, so memory stays that of one denoiser call.

Everything is a function of (seed, step) and of the per-prompt statistics saved with each checkpoint, so a resumed
run continues bit for bit. Statistics over more than one group (the global and max-group std, the per-prompt running
statistics, the logged spreads) are taken over every process's groups, as one process holding the whole batch would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from drf.errors import ConfigError, invalid
from drf.frames import frames_from_config
from drf.grad_window import mix_window
from drf.sampling import sample_sde, sde_step
from drf.stats import metric_means
from trainers.advantages import group_advantages
from trainers.base import Trainer, finite_all
from trainers.config import RunConfig, TrainerConfig
from trainers.data import stream_seed
from trainers.distributed import gather_list, gather_rows
from trainers.weights import adapters_disabled


@dataclass
class GRPOConfig(TrainerConfig):
    """The ``grpo:`` section: the GRPO recipe's own knobs plus the shared trainer knobs.

    ``prompts_per_step`` counts prompts; each is sampled ``group_size`` times, so a micro-batch holds
    prompts_per_step x group_size videos.
    """

    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "reward_weights": "moved to the run's rewards: list, e.g. rewards: [{name: critic, weight: 1.0}, "
        "{name: geometry.smoothness, weight: 0.25, model: toyworld}]",
        "geometry_model": "moved into each geometry reward of the run's rewards: list, e.g. rewards: "
        "[{name: critic}, {name: geometry.trajectory, weight: 0.5, model: toyworld}]",
    }

    group_size: int = field(default=4, metadata={"help": "Videos sampled per prompt; advantages are relative to them."})
    sde_kind: Literal["flow_grpo", "dance_grpo", "cps"] = field(
        default="flow_grpo", metadata={"help": "How a sampling step becomes a Gaussian transition (drf.sampling)."}
    )
    noise_level: float = field(
        default=0.7, metadata={"help": "SDE noise level a (eta): 0 is the deterministic Euler step."}
    )
    window_size: int = field(
        default=2, metadata={"help": "Sampling steps run as SDE and trained per rollout (MixGRPO window)."}
    )
    window_schedule: Literal["fixed", "progressive", "random"] = field(
        default="fixed",
        metadata={"help": "fixed: steps [window_start, +size); progressive: slide one step later every "
                  "window_shift_every steps; random: a fresh start per step."},
    )  # fmt: skip
    window_start: int = field(
        default=0,
        metadata={"help": "First windowed step (fixed, and where progressive starts); the window must end by the last "
                  "SDE step."},
    )  # fmt: skip
    window_shift_every: int = field(default=1, metadata={"help": "Steps between shifts of the progressive window."})
    sde_last_step: bool = field(
        default=False,
        metadata={"help": "Let the window reach the last sampling step (into sigma = 0). Off, as in flow_grpo: that "
                  "step only adds noise the decoder sees; cps cannot (its std is 0 there)."},
    )  # fmt: skip
    shared_noise: bool = field(
        default=True,
        metadata={"help": "All videos of a group start from the same initial noise (only the SDE differs)."},
    )
    clip_range: float = field(
        default=1e-4,
        metadata={"help": "Trust region eps: the ratio is clipped to [1-eps, 1+eps]. Log-probabilities are means over "
                  "latent elements, so ratios stay close to 1 and eps is small."},
    )  # fmt: skip
    adv_clip: float = field(default=5.0, metadata={"help": "Advantages are clipped to [-adv_clip, adv_clip]."})
    std_mode: Literal["group", "global", "max_group"] = field(
        default="group",
        metadata={"help": "Advantage normaliser: each group's own std, the std over the whole micro-batch, or the "
                  "largest group std of the micro-batch (both over every process)."},
    )  # fmt: skip
    std_floor: float = field(
        default=1e-3, metadata={"help": "The normalising std is at least this (groups with zero spread get 0)."}
    )
    kl_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the KL to the base model (LoRA disabled): squared difference of the SDE step "
                  "means over 2 std^2; lora only."},
    )  # fmt: skip
    videos_per_backward: int = field(
        default=0,
        metadata={"help": "Videos whose transitions are recomputed in one backward pass (0: the whole micro-batch); "
                  "smaller needs less memory for the same gradient."},
    )  # fmt: skip
    inner_epochs: int = field(
        default=1, metadata={"help": "Optimiser updates per batch of rollouts (each recomputes every log-prob)."}
    )
    per_prompt_stats: bool = field(
        default=False,
        metadata={"help": "Centre (and, with std_mode group, scale) each reward by a running mean/std per prompt over "
                  "all its samples so far (on every process) instead of the current group's."},
    )  # fmt: skip
    def validate(self) -> None:
        super().validate()
        for key in ("group_size",):
            if getattr(self, key) < 2:
                raise invalid(key, f"must be >= 2: advantages compare videos of one prompt (got {self.group_size})")
        for key in ("window_size", "inner_epochs", "window_shift_every"):
            if getattr(self, key) < 1:
                raise invalid(key, f"must be >= 1 (got {getattr(self, key)})")
        for key in ("noise_level", "clip_range", "adv_clip", "std_floor"):
            if not getattr(self, key) > 0:
                raise invalid(key, f"must be > 0 (got {getattr(self, key)})")
        if self.videos_per_backward < 0:
            raise invalid("videos_per_backward", f"must be >= 0 (got {self.videos_per_backward})")
        if self.window_start < 0:
            raise invalid("window_start", f"must be >= 0 (got {self.window_start})")
        if self.window_schedule == "random" and self.window_start != 0:
            raise invalid("window_start", "is not read by window_schedule: random (each step draws its own start)")
        if self.window_schedule != "progressive" and self.window_shift_every != 1:
            raise invalid("window_shift_every", f"is read by window_schedule: progressive only (got "
                          f"{self.window_schedule})")  # fmt: skip
        if self.sde_last_step and self.sde_kind == "cps":
            raise invalid("sde_last_step", "cannot be used with sde_kind: cps (its std sigma_next*sin(a*pi/2) is 0 at "
                          "the last step, so the log-probability is undefined)")  # fmt: skip
        if self.kl_weight < 0:
            raise invalid("kl_weight", f"must be >= 0 (got {self.kl_weight})")
        if self.kl_weight > 0 and self.trainable != "lora":
            raise invalid(
                "kl_weight", "needs trainable: lora (the base model is the transformer with its LoRA disabled)"
            )


@dataclass
class GRPORunConfig(RunConfig):
    """`drf train` with a ``grpo:`` section: group-relative policy optimisation of a video generator."""

    name: str = field(default="grpo", metadata={"help": "Run name; the run directory is logging.output_dir/name."})
    grpo: GRPOConfig = field(default_factory=GRPOConfig, metadata={"help": "The GRPO recipe."})

    def validate(self) -> None:
        super().validate()
        self.refuse_grad_window("GRPO trains the steps of its SDE window (grpo.window_size, grpo.window_schedule)")
        if self.model.scheduler != "euler":
            raise invalid(
                "model.scheduler",
                f"{self.model.scheduler!r} is not supported by GRPO: its rollouts step outside the SDE window with "
                "Euler; set model.scheduler: euler",
            )
        g, steps = self.grpo, self.sampling.num_steps
        usable = steps if g.sde_last_step else steps - 1
        if g.window_size > usable:
            raise invalid(
                "grpo.window_size",
                f"must be <= {usable} (sampling.num_steps = {steps}; the last step is not an SDE step unless "
                "grpo.sde_last_step: true)",
            )
        if g.window_start > usable - g.window_size:
            raise invalid(
                "grpo.window_start",
                f"must be <= {usable - g.window_size} (got {g.window_start}): the window of grpo.window_size = "
                f"{g.window_size} steps must end by step {usable - 1} of sampling.num_steps = {steps}",
            )


# ----------------------------------------------------------------------------------------------------------------
# advantages


class PromptStats:
    """Running mean and std of each named reward per prompt (Welford), over every sample seen so far."""

    def __init__(self) -> None:
        self.table: dict[str, list[float]] = {}  # "reward\tprompt" -> [count, mean, M2]

    def update(self, reward: str, prompt: str, values: Sequence[float]) -> tuple[float, float]:
        """Add ``values`` and return the (mean, population std) including them."""
        count, mean, m2 = self.table.get(f"{reward}\t{prompt}", [0.0, 0.0, 0.0])
        for value in values:
            count += 1
            delta = value - mean
            mean += delta / count
            m2 += delta * (value - mean)
        self.table[f"{reward}\t{prompt}"] = [count, mean, m2]
        return mean, math.sqrt(m2 / count)

    def state_dict(self) -> dict[str, list[float]]:
        return {key: list(value) for key, value in self.table.items()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.table = {key: list(value) for key, value in state.items()}


def clipped_policy_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate ``mean(max(-A r, -A clip(r, 1-eps, 1+eps)))`` with r = exp(new - old) -> (loss, r).

    Outside the trust region on the side the advantage pushes towards, the clipped term wins and the gradient is 0.
    """
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    return torch.maximum(unclipped, clipped).mean(), ratio


# ----------------------------------------------------------------------------------------------------------------
# the trainer


@dataclass
class RolloutBatch:
    """One micro-batch of groups, sampled without gradient: what the policy update needs."""

    cond: Any
    transitions: list[Any]
    advantages: torch.Tensor  # [B] (B = prompts x group_size, prompt-major)
    rewards: dict[str, torch.Tensor]  # name -> [N*P,G]: every process's rewards, groups in rank order (for the logs)
    combined: torch.Tensor  # [N*P,G]: every process's weighted advantages before clipping (for the logs)


class GRPOTrainer(Trainer):
    """GRPO: the shared loop (``trainers.base.Trainer``) around a sample-score-update step on SDE transitions."""

    section = "grpo"

    def setup_recipe(self) -> None:
        self.prompt_stats = PromptStats()
        g = self.cfg.grpo
        if self.frozen_expert():
            usable = self.cfg.sampling.num_steps if g.sde_last_step else self.cfg.sampling.num_steps - 1
            sde_steps = [i for i in self.expert_steps if i < usable]
            if g.window_size > len(sde_steps):
                raise ConfigError(f"grpo.window_size is {g.window_size} but the trained expert "
                                  f"({', '.join(self.experts)}) runs only SDE-able steps {sde_steps}; set "
                                  f"grpo.window_size <= {len(sde_steps)}, or model.train_experts: both")  # fmt: skip

    def updates_per_step(self) -> int:
        return self.cfg.grpo.inner_epochs

    def recipe_state(self) -> dict[str, Any]:
        return {"prompt_stats": self.prompt_stats.state_dict()}

    def load_recipe_state(self, state: dict[str, Any]) -> None:
        self.prompt_stats.load_state_dict(state.get("prompt_stats", {}))

    def window_description(self) -> str:
        g = self.cfg.grpo
        return (
            f"{self.cfg.sampling.num_steps} sampling steps; {g.window_size} of them SDE ({g.sde_kind}, "
            f"noise {g.noise_level}) and trained, {g.window_schedule} window; group of {g.group_size} videos per "
            f"prompt ({'shared' if g.shared_noise else 'independent'} initial noise), {g.inner_epochs} update(s) "
            "per batch"
        ) + (f"; the window stays inside steps {self.expert_steps} (the trained expert's)"
             if self.frozen_expert() else "")  # fmt: skip

    def trained_steps(self) -> set[int]:
        return {i for step in range(self.cfg.grpo.steps) for i in self.window(step).steps}

    def window(self, step: int, within: range | None = None) -> Any:
        """The SDE window of ``step``, inside the steps ``within`` when given (see ``window_span``)."""
        g = self.cfg.grpo
        return mix_window(
            g.window_schedule, g.window_size, self.cfg.sampling.num_steps, step, reach_end=g.sde_last_step,
            start=g.window_start, shift_every=g.window_shift_every, seed=self.cfg.seed, within=within,
        )  # fmt: skip

    def window_span(self) -> range | None:
        """The steps the SDE window stays inside: those of the trained expert (``None``: all of them; an expert's
        steps are contiguous, the noisiest ones the high-noise expert's). ``trained_steps`` lists the unrestricted
        windows, which ``model.train_experts`` is checked against before the experts are chosen."""
        steps = self.expert_steps
        return range(steps[0], steps[-1] + 1) if self.frozen_expert() else None

    # ------------------------------------------------------------------------------------------------ rollouts
    @torch.no_grad()
    def rollout(self, step: int, micro: int, timer: Any) -> tuple[RolloutBatch, dict[str, float]]:
        """Sample and score one micro-batch of groups; returns it with its advantages and reward metrics."""
        cfg, g, acc = self.cfg, self.cfg.grpo, self.accelerator
        prompts = self._prompts_for(step, micro)
        videos = [p for p in prompts for _ in range(g.group_size)]  # prompt-major: group k is rows k*G..(k+1)*G-1
        picked = frames_from_config(cfg.sampling.frames, cfg.model.num_frames, step * g.gradient_accumulation + micro)
        rng = torch.Generator().manual_seed(stream_seed(cfg.seed, step, micro, acc.process_index))
        with timer("sampling"):
            cond = self.generator.encode_prompts(prompts, cfg.sampling.guidance_scale).repeat_interleave(g.group_size)
            if g.shared_noise:
                noise = self.generator.init_latents(len(prompts), rng).repeat_interleave(g.group_size, 0)
            else:
                noise = self.generator.init_latents(len(videos), rng)
            with self._autocast():
                rollout = sample_sde(
                    self.generator, cond, self.window(step, self.window_span()), kind=g.sde_kind,
                    noise_level=g.noise_level, latents=noise, rng=rng,
                )  # fmt: skip
        seeds = [stream_seed(cfg.seed, step, micro, acc.process_index, i) for i in range(len(videos))]
        scored = self.score_videos(videos, rollout.latents, picked, timer, seeds)
        advantages, rewards, combined = self.advantages(scored.values, prompts)
        return RolloutBatch(cond, rollout.transitions, advantages, rewards, combined), scored.metrics

    def advantages(
        self, named: dict[str, torch.Tensor], prompts: list[str]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Weighted sum of each named reward's group-relative advantage, clipped -> (this process's [B], every
        process's rewards [N*P,G] by name, every process's advantages before clipping [N*P,G]).

        Per-prompt statistics are updated with every process's groups in rank order, on every process, so all hold
        the same table (the one a checkpoint saves) and each group is centred as one process holding them all would.
        """
        g, acc = self.cfg.grpo, self.accelerator
        weights = self.rewards.weights
        mine = slice(acc.process_index * len(prompts), (acc.process_index + 1) * len(prompts))
        everyone = gather_list(prompts, acc) if g.per_prompt_stats else prompts
        combined = torch.zeros(len(prompts), g.group_size)
        rewards = {}
        for name, values in named.items():
            grid = values.detach().float().cpu().reshape(len(prompts), g.group_size)  # [P,G]
            population = rewards[name] = gather_rows(grid, acc)  # [N*P,G]
            if weights[name] == 0:
                continue
            mean = std = None
            if g.per_prompt_stats:
                stats = [self.prompt_stats.update(name, p, row.tolist()) for p, row in zip(everyone, population)]
                mean = torch.tensor([[m] for m, _ in stats[mine]])
                std = torch.tensor([[s] for _, s in stats[mine]])
            combined += weights[name] * group_advantages(grid, g.std_mode, g.std_floor, mean, std, population)
        return combined.clamp(-g.adv_clip, g.adv_clip).reshape(-1), rewards, gather_rows(combined, acc)

    def spread_metrics(self, batches: list[RolloutBatch]) -> dict[str, float]:
        """Each reward's std and the advantages' mean, std, largest magnitude and clipped fraction over every video of
        the step (each micro-batch, every process): a mean of per-process stds or maxima is not the batch's."""
        clip = self.cfg.grpo.adv_clip
        metrics = {
            f"reward/{name}/std": float(torch.cat([b.rewards[name] for b in batches]).std(unbiased=False))
            for name in batches[0].rewards
        }
        combined = torch.cat([b.combined for b in batches])
        advantages = combined.clamp(-clip, clip)
        metrics["advantage/mean"] = float(advantages.mean())
        metrics["advantage/std"] = float(advantages.std(unbiased=False))
        metrics["advantage/abs_max"] = float(advantages.abs().max())
        metrics["advantage/clipped_fraction"] = float((combined.abs() > clip).float().mean())
        return metrics

    # ------------------------------------------------------------------------------------------------ update
    def transition_loss(
        self, batch: RolloutBatch, transition: Any, rows: slice = slice(None)
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clipped policy loss (+ KL) of one stored transition of videos ``rows`` under the current policy, with
        gradient; means over those videos."""
        g = self.cfg.grpo
        x = transition.latents[rows]
        cond = batch.cond.select(rows)

        def step_under_model() -> Any:
            with self._autocast():
                v = self.generator.velocity(x, transition.timestep, cond)
            return sde_step(
                v, x, transition.sigma, transition.sigma_next, kind=g.sde_kind, noise_level=g.noise_level,
                x_next=transition.next_latents[rows],
            )  # fmt: skip

        new = step_under_model()
        old_log_prob = transition.log_prob[rows]
        advantages = batch.advantages[rows].to(new.log_prob.device)
        loss, ratio = clipped_policy_loss(new.log_prob, old_log_prob, advantages, g.clip_range)
        stats = {
            "ratio": ratio.detach(),
            "clip_fraction": ((ratio.detach() - 1).abs() > g.clip_range).float(),
            "approx_kl": 0.5 * (new.log_prob.detach() - old_log_prob) ** 2,
        }
        if g.kl_weight > 0:
            with torch.no_grad(), adapters_disabled(self.transformer):
                reference = step_under_model()
            dims = tuple(range(1, new.mean.ndim))
            kl = ((new.mean - reference.mean) ** 2).mean(dim=dims) / (2 * new.std.detach() ** 2)
            loss = loss + g.kl_weight * kl.mean()
            stats["kl"] = kl.detach()
        return loss, stats

    def update(self, batches: list[RolloutBatch], timer: Any) -> tuple[dict[str, float], bool]:
        """One optimiser update over every transition of every micro-batch: one backward per transition and chunk
        of ``videos_per_backward`` videos, each weighted by its share so the gradient is that of the full mean."""
        terms = sum(len(b.transitions) for b in batches)
        losses, stats = [], {}
        self.optimizer.zero_grad(set_to_none=True)
        with timer("backward"):
            for batch in batches:
                size = len(batch.advantages)
                chunk = self.cfg.grpo.videos_per_backward or size
                for transition in batch.transitions:
                    for start in range(0, size, chunk):
                        rows = slice(start, min(start + chunk, size))
                        share = (rows.stop - rows.start) / size
                        loss, parts = self.transition_loss(batch, transition, rows)
                        if torch.isfinite(loss.detach()):
                            self.accelerator.backward(loss * share / terms)
                        losses.append(loss.detach() * share)
                        for key, value in parts.items():
                            stats.setdefault(key, []).append(value.float())
        lr = self.lr_scheduler.get_last_lr()[0]
        finite, grad_norm = self.apply_gradients(finite_all(losses))
        metrics = {f"policy/{key}": float(torch.cat(values).mean()) for key, values in stats.items()}
        metrics.update(loss=float(torch.stack(losses).float().sum() / terms), grad_norm=grad_norm, lr=lr)
        return metrics, finite

    def train_step(self, step: int) -> tuple[dict[str, float], bool]:
        """Sample every micro-batch, then ``inner_epochs`` updates -> (metrics, finite). Policy metrics are means
        over the updates: the first sees ratio 1 (nothing moved the weights since sampling), later ones show how far
        the policy moved and how much of it the trust region clipped."""
        g = self.cfg.grpo
        started = time.perf_counter()
        timer = self.start_step()
        batches, records = [], []
        for micro in range(g.gradient_accumulation):
            batch, metrics = self.rollout(step, micro, timer)
            batches.append(batch)
            records.append(metrics)
        updates, finite_steps = [], []
        for _ in range(g.inner_epochs):
            metrics, finite = self.update(batches, timer)
            updates.append(metrics)
            finite_steps.append(finite)
        out = metric_means(records)
        out.update(self.spread_metrics(batches))
        out.update(metric_means(updates))
        out["lr"] = updates[0]["lr"]
        out.setdefault("grad_norm", math.nan)  # every update skipped
        return self.finish_step(out, all(finite_steps), timer, started)


def train(cfg: GRPORunConfig, resume: str | None = None) -> Any:
    """Run GRPO training as configured (continuing from ``resume``: 'latest' or a checkpoint path)."""
    return GRPOTrainer(cfg, resume).train()
