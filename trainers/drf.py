"""Direct reward fine-tuning: backpropagate the run's rewards through a window of steps of the sampling chain.

One optimiser step, per micro-batch of prompts: draw each video's initial noise from its own stream, seeded by (seed,
step, the video's place in the step's global batch), so one process with the whole batch and N processes with 1/N
each, with or without accumulation, draw the same noise; run the sampling chain with gradient only inside the window
(last-K, random-K, or the one-step x0 window, which stops at a random step and scores the clean latent predicted
there); decode the chosen frames (only when a reward reads frames); score them with the run's ``rewards:`` (all differentiable: the critic
on each prompt's question set, geometry rewards on the latents, a user's own); loss = -(weighted sum of rewards)
+ kl_weight * KL + l2_weight * L2. KL is the squared distance between the adapted and the frozen base model's velocity at the windowed steps
(the base is the same transformer with its LoRA switched off); L2 is the squared distance between the final latents
and the base model's sample from the same noise through the same window (for x0, its prediction at the same step). Gradients are summed over micro-batches, averaged over processes,
checked for NaN/Inf (a bad step is skipped without touching weights or optimiser state), clipped and applied.

Everything is a function of (seed, step), so a run resumed from a checkpoint continues bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from drf.errors import ConfigError, invalid
from drf.frames import frames_from_config
from drf.grad_window import window_from_config, x0_pool
from drf.sampling import sample
from drf.stats import metric_means
from trainers.base import Trainer, finite_all
from trainers.config import RunConfig, TrainerConfig
from trainers.data import stream_noise, stream_seed
from trainers.weights import adapters_disabled


@dataclass
class DRFConfig(TrainerConfig):
    """The ``drf:`` section: the DRF recipe's own knobs plus the shared trainer knobs."""

    kl_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the mean squared velocity difference to the base model (LoRA disabled) at the "
            "windowed steps; lora only."
        },
    )
    l2_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the mean squared difference between the final latents and the base model's "
                  "sample from the same noise (one extra gradient-free rollout; with the x0 window the base's x0 at "
                  "the same step); lora only."},
    )  # fmt: skip

    autocast_decode: bool = field(
        default=False,
        metadata={"help": "Also autocast the VAE decode (with gradient) to bf16 when mixed_precision is bf16: halves "
                  "its activation memory, which dominates at 480p (about 18 GB per frame-megapixel in fp32)."},
    )  # fmt: skip

    def validate(self) -> None:
        super().validate()
        if self.autocast_decode and self.mixed_precision != "bf16":
            raise invalid("autocast_decode", "needs mixed_precision: bf16")
        for key in ("kl_weight", "l2_weight"):
            value = getattr(self, key)
            if value < 0:
                raise invalid(key, f"must be >= 0 (got {value})")
            if value > 0 and self.trainable != "lora":
                raise invalid(key, "needs trainable: lora (the base model is the transformer with its LoRA disabled)")


@dataclass
class DRFRunConfig(RunConfig):
    """`drf train` with a ``drf:`` section: direct reward fine-tuning of a video generator."""

    name: str = field(default="drf", metadata={"help": "Run name; the run directory is logging.output_dir/name."})
    drf: DRFConfig = field(default_factory=DRFConfig, metadata={"help": "The DRF recipe."})


class PenaltyProbe:
    """The generator as the chain sees it, recording (v_theta, v_base) at every windowed step.

    Windowed steps are the ones the chain runs with grad enabled; there the frozen base velocity is computed once
    more with the LoRA switched off, under no_grad. Per-step activation checkpointing calls ``velocity`` again
    during backward; a step already recorded is not recorded (nor its base recomputed) twice. The penalty is
    formed outside the checkpointed call, from the returned velocity, so the recomputation sees the same graph.
    """

    def __init__(self, generator: Any, trained: torch.nn.Module, record: bool) -> None:
        self.generator = generator
        self.trained = trained
        self.record = record
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._seen: set[float] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)

    def reset(self) -> None:
        self.pairs, self._seen = [], set()

    def velocity(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Any) -> torch.Tensor:
        v = self.generator.velocity(latents, timestep, cond)
        key = float(timestep)
        if self.record and torch.is_grad_enabled() and key not in self._seen:
            self._seen.add(key)
            with torch.no_grad(), adapters_disabled(self.trained):
                base = self.generator.velocity(latents, timestep, cond)
            self.pairs.append((v, base))
        return v

    def penalty(self) -> torch.Tensor:
        """Mean over windowed steps of the mean squared velocity difference (a scalar with grad)."""
        terms = [(v.float() - base.float()).pow(2).mean() for v, base in self.pairs]
        return torch.stack(terms).mean()


class DRFTrainer(Trainer):
    """DRF: the shared loop (``trainers.base.Trainer``) around a step that backpropagates the rewards."""

    section = "drf"

    def trained_steps(self) -> set[int]:
        w, n = self.cfg.sampling.grad_window, self.cfg.sampling.num_steps
        if w.kind == "x0":
            return set(x0_pool(w, n))
        return set(range(n)) if w.kind == "random_k" else set(window_from_config(w, n).steps)

    def setup_recipe(self) -> None:
        self.rewards.require_differentiable("DRF")
        w = self.cfg.sampling.grad_window
        if w.kind == "random_k" and w.k > len(self.expert_steps):
            raise ConfigError(f"sampling.grad_window.k is {w.k} but the trained expert ({', '.join(self.experts)}) "
                              f"runs only sampling steps {self.expert_steps}; set k <= {len(self.expert_steps)}, or "
                              "model.train_experts: both")  # fmt: skip
        if w.kind == "x0":
            x0_pool(w, self.cfg.sampling.num_steps, self.expert_steps)  # a pool with nothing to train fails here
        self.chain = PenaltyProbe(self.generator, self.transformer, record=self.cfg.drf.kl_weight > 0)

    def window_description(self) -> str:
        w, n = self.cfg.sampling.grad_window, self.cfg.sampling.num_steps
        checkpointing = f"(checkpointing {'on' if w.checkpointing else 'off'})"
        if w.kind == "x0":
            pool = x0_pool(w, n, self.expert_steps)
            among = "any step" if len(pool) == n else f"steps {pool}"
            return (f"{n} sampling steps, gradient through x0: one step per micro-batch drawn from {among}, the chain "
                    f"stops there and its predicted clean latent is decoded and scored {checkpointing}")  # fmt: skip
        steps = f"steps {sorted(w.steps)}" if w.kind == "steps" else f"k={w.k}"
        if w.kind == "random_k" and self.frozen_expert():
            steps += f" among steps {self.expert_steps} (the trained expert's)"
        return f"{n} sampling steps, gradient through {w.kind} {steps} {checkpointing}"

    # ------------------------------------------------------------------------------------------------ one step
    def micro_step(self, step: int, micro: int, timer: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Roll out, score and backpropagate one micro-batch; returns the (unscaled) loss and its metrics."""
        cfg, d, acc = self.cfg, self.cfg.drf, self.accelerator
        rollout_index = step * d.gradient_accumulation + micro
        prompts = self._prompts_for(step, micro)
        window = window_from_config(cfg.sampling.grad_window, cfg.sampling.num_steps, rollout_index, self.expert_steps)
        picked = frames_from_config(cfg.sampling.frames, cfg.model.num_frames, rollout_index)
        # This micro-batch's first video in the step's global batch (the order prompts are drawn in): a video's
        # noise depends on its place there only, whatever the split over micro-batches and processes. The third
        # part is 0 so that runs without accumulation keep the streams they always had.
        first = (micro * acc.num_processes + acc.process_index) * len(prompts)
        seeds = [stream_seed(cfg.seed, step, 0, first + i) for i in range(len(prompts))]

        with timer("sampling"):
            cond = self.generator.encode_prompts(prompts, cfg.sampling.guidance_scale)
            noise = stream_noise(self.generator, seeds)
            self.chain.reset()
            with self._autocast():
                rollout = sample(self.chain, cond, window, latents=noise)
        decode_context = self._autocast() if d.autocast_decode else None
        scored = self.score_videos(prompts, rollout.latents, picked, timer, seeds, decode_context)
        loss = -scored.total.mean()
        metrics = scored.metrics
        if d.kl_weight > 0:
            kl = self.chain.penalty()
            loss = loss + d.kl_weight * kl
            metrics["kl"] = float(kl.detach())
        if d.l2_weight > 0:
            with timer("sampling"), torch.no_grad(), adapters_disabled(self.transformer), self._autocast():
                base = sample(self.generator, cond, window, latents=noise).latents  # without grad: the window's output
            l2 = (rollout.latents.float() - base.float()).pow(2).mean()
            loss = loss + d.l2_weight * l2
            metrics["l2"] = float(l2.detach())
        with timer("backward"):
            if torch.isfinite(loss.detach()):
                acc.backward(loss / d.gradient_accumulation)
        self.chain.reset()
        return loss.detach(), metrics

    def train_step(self, step: int) -> tuple[dict[str, float], bool]:
        """One optimiser step (all micro-batches) -> (metrics, finite). A non-finite step changes no weights."""
        d = self.cfg.drf
        started = time.perf_counter()
        timer = self.start_step()
        self.optimizer.zero_grad(set_to_none=True)
        losses, records = [], []
        for micro in range(d.gradient_accumulation):
            loss, metrics = self.micro_step(step, micro, timer)
            losses.append(loss)
            records.append(metrics)
        lr = self.lr_scheduler.get_last_lr()[0]
        finite, grad_norm = self.apply_gradients(finite_all(losses))
        out = metric_means(records)
        out.update(loss=float(torch.stack(losses).float().mean()), grad_norm=grad_norm, lr=lr)
        return self.finish_step(out, finite, timer, started)


def train(cfg: DRFRunConfig, resume: str | None = None) -> Path:
    """Run DRF training as configured (continuing from ``resume``: 'latest' or a checkpoint path)."""
    return DRFTrainer(cfg, resume).train()
