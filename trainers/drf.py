"""Direct reward fine-tuning: backpropagate the critic's per-question rewards through the last steps of the chain.

One optimiser step, per micro-batch of prompts: draw the initial noise from a generator seeded by (seed, step,
micro-batch, process); run the sampling chain with gradient only inside the window (last-K or random-K); decode the
chosen frames; score them against each prompt's question set; loss = -(weighted reward) + kl_weight * KL + l2_weight
* L2. KL is the squared distance between the adapted and the frozen base model's velocity at the windowed steps
(the base is the same transformer with its LoRA switched off); L2 is the squared distance between the final latents
and the base model's sample from the same noise. Gradients are summed over micro-batches, averaged over processes,
checked for NaN/Inf (a bad step is skipped without touching weights or optimiser state), clipped and applied.

Everything is a function of (seed, step), so a run resumed from a checkpoint continues bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from critics.config import CriticConfig
from drf.config import LoggingConfig, ModelConfig, SamplingConfig, invalid
from prompts.config import QuestionsConfig
from trainers.common import TrainerConfig


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
                  "sample from the same noise (one extra gradient-free rollout); lora only."},
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
class DRFRunConfig:
    """`drf train` with a ``drf:`` section: direct reward fine-tuning of a video generator."""

    name: str = field(default="drf", metadata={"help": "Run name; the run directory is logging.output_dir/name."})
    seed: int = field(default=0, metadata={"help": "Seed of data order, noise, window and frame draws."})
    prompts: str = field(
        default="configs/prompts/tiny_train.txt",
        metadata={"help": "Prompt file: .txt (one per line, all train) or .jsonl ({prompt, split: train|eval})."},
    )
    eval_prompts: str = field(
        default="", metadata={"help": "Optional extra file of held-out eval prompts (every prompt in it is eval)."}
    )
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The video generator."})
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "The sampling chain."})
    critic: CriticConfig = field(default_factory=CriticConfig, metadata={"help": "The frozen VLM critic."})
    questions: QuestionsConfig = field(
        default_factory=QuestionsConfig, metadata={"help": "How prompts become question sets."}
    )
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "Outputs and logging."})
    drf: DRFConfig = field(default_factory=DRFConfig, metadata={"help": "The DRF recipe."})

    def validate(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise invalid("name", f"must be a plain directory name (got {self.name!r})")


class PenaltyProbe:
    """The generator as the chain sees it, recording (v_theta, v_base) at every windowed step.

    Windowed steps are the ones the chain runs with grad enabled; there the frozen base velocity is computed once
    more with the LoRA switched off, under no_grad. Per-step activation checkpointing calls ``velocity`` again
    during backward; a step already recorded is not recorded (nor its base recomputed) twice. The penalty is
    formed outside the checkpointed call, from the returned velocity, so the recomputation sees the same graph.
    """

    def __init__(self, generator: Any, record: bool) -> None:
        self.generator = generator
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
            from trainers.common import adapters_disabled

            self._seen.add(key)
            with torch.no_grad(), adapters_disabled(self.generator.trainable_module()):
                base = self.generator.velocity(latents, timestep, cond)
            self.pairs.append((v, base))
        return v

    def penalty(self) -> torch.Tensor:
        """Mean over windowed steps of the mean squared velocity difference (a scalar with grad)."""
        terms = [(v.float() - base.float()).pow(2).mean() for v, base in self.pairs]
        return torch.stack(terms).mean()


class DRFTrainer:
    """Builds everything a DRF run needs from its config, optionally resumes, and trains with ``train()``."""

    section = "drf"

    def __init__(
        self, cfg: DRFRunConfig, resume: str | None = None, *, generator: Any = None, critic: Any = None
    ) -> None:
        """``generator``/``critic``: already-built models to use instead of building them from ``cfg`` (tests and
        benches share one set of tiny models this way); the generator must not carry an adapter yet."""
        from accelerate.utils import set_seed

        from critics.registry import load_critic
        from drf.checkpoint import NonFiniteGuard, load_checkpoint, resolve_resume
        from drf.models.wan import WanGenerator
        from trainers import common

        self.cfg = cfg
        train_cfg = cfg.drf
        self.accelerator = common.make_accelerator(train_cfg.mixed_precision)
        acc = self.accelerator
        set_seed(cfg.seed)  # LoRA initialisation and anything else drawn from the global streams
        resume_path = resolve_resume(common.run_dir_of(cfg), resume) if resume is not None else None
        setup = common.prepare_run(cfg, acc, resume)
        self.run_dir, self.splits, self.question_sets = setup.run_dir, setup.splits, setup.question_sets
        self.config_yaml = setup.config_yaml

        if generator is None:
            generator = WanGenerator.from_config(cfg.model, device=acc.device)
        self.generator = generator
        self.generator.pipe.set_progress_bar_config(disable=True)
        self.transformer = self.generator.trainable_module()
        self.params = common.setup_trainable(self.transformer, train_cfg, self.section)
        if train_cfg.gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()
        self.chain = PenaltyProbe(self.generator, record=train_cfg.kl_weight > 0)

        if critic is None:
            critic = load_critic(common.critic_config_for(cfg.critic, acc, self.run_dir))
        self.critic = critic

        self.optimizer = common.build_optimizer(self.params, train_cfg, self.section)
        self.lr_scheduler = common.build_lr_scheduler(self.optimizer, train_cfg)
        self.ema = common.build_ema(self.params, train_cfg)
        self.guard = NonFiniteGuard(self.run_dir, train_cfg.max_consecutive_skips)
        self.step = 0
        self.resumed_from = resume_path
        if resume_path is not None:
            state = load_checkpoint(
                resume_path,
                trainable_module_or_setter=self.transformer,
                optimizer=self.optimizer,
                lr_scheduler=self.lr_scheduler,
                ema=self.ema,
                accelerator=acc,
            )
            self.step = int(state["step"])
            if state["config_yaml"] != self.config_yaml and acc.is_main_process:
                print(f"note: the config differs from the one saved in {resume_path}; continuing with the new one")

    # ------------------------------------------------------------------------------------------------ helpers
    def _autocast(self):
        return self.accelerator.autocast()

    def _describe(self) -> list[str]:
        from trainers.common import batch_arithmetic, count_parameters

        cfg, d = self.cfg, self.cfg.drf
        w = cfg.sampling.grad_window
        steps = f"steps {sorted(w.steps)}" if w.kind == "steps" else f"k={w.k}"
        window = (
            f"{cfg.sampling.num_steps} sampling steps, gradient through {w.kind} {steps} "
            f"(checkpointing {'on' if w.checkpointing else 'off'})"
        )
        f = cfg.sampling.frames
        frames = f"{f.policy} (n={f.n}) of {cfg.model.num_frames} frames at {cfg.model.height}x{cfg.model.width}"
        lines = batch_arithmetic(d, self.accelerator.num_processes, len(self.splits.train), window, frames)
        what = (
            f"lora r={d.lora_rank} on {', '.join(d.lora_target_modules)}"
            if d.trainable == "lora"
            else (f"full: {', '.join(d.full_modules)}")
        )
        lines.append(f"trainable: {what} ({count_parameters(self.params):,} parameters)")
        every = cfg.logging.sample_every
        source = "held-out" if self.splits.eval else "train (no eval split)"
        lines.append(
            f"eval: {len(self._eval_prompts())} {source} prompts every {every} steps"
            if every
            else "eval: off (logging.sample_every = 0)"
        )
        return lines

    def _eval_prompts(self) -> list[str]:
        prompts = self.splits.eval or self.splits.train
        return prompts[: self.cfg.drf.eval_max_prompts]

    def _prompts_for(self, step: int, micro: int) -> list[str]:
        from trainers.common import prompt_index

        acc, b = self.accelerator, self.cfg.drf.prompts_per_step
        start = ((step * self.cfg.drf.gradient_accumulation + micro) * acc.num_processes + acc.process_index) * b
        n = len(self.splits.train)
        return [self.splits.train[prompt_index(self.cfg.seed, start + i, n)] for i in range(b)]

    def data_state(self, step: int) -> dict[str, int]:
        d = self.cfg.drf
        position = step * d.gradient_accumulation * self.accelerator.num_processes * d.prompts_per_step
        return {"position": position, "epoch": position // len(self.splits.train)}

    # ------------------------------------------------------------------------------------------------ one step
    def micro_step(self, step: int, micro: int, timer: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Roll out, score and backpropagate one micro-batch; returns the (unscaled) loss and its metrics."""
        from drf.frames import frames_from_config
        from drf.grad_window import GradWindow, window_from_config
        from drf.rewards import RewardOutput, aggregate, reward_metrics
        from drf.sampling import sample
        from trainers.common import adapters_disabled, stream_seed

        cfg, d, acc = self.cfg, self.cfg.drf, self.accelerator
        rollout_index = step * d.gradient_accumulation + micro
        prompts = self._prompts_for(step, micro)
        qsets = [self.question_sets[p] for p in prompts]
        window = window_from_config(cfg.sampling.grad_window, cfg.sampling.num_steps, rollout_index)
        picked = frames_from_config(cfg.sampling.frames, cfg.model.num_frames, rollout_index)
        rng = torch.Generator().manual_seed(stream_seed(cfg.seed, step, micro, acc.process_index))

        with timer("sampling"):
            cond = self.generator.encode_prompts(prompts, cfg.sampling.guidance_scale)
            noise = self.generator.init_latents(len(prompts), rng)
            self.chain.reset()
            with self._autocast():
                rollout = sample(self.chain, cond, window, latents=noise)
        with timer("decode"), self._autocast() if d.autocast_decode else contextlib.nullcontext():
            frames = self.generator.decode(rollout.latents, picked)  # [B,T,3,H,W] in [0,1]
        with timer("critic"):
            out = self.critic.score(frames.float(), qsets)
            rewards = RewardOutput.from_critic(out, qsets)
            total, per_aspect = aggregate(rewards, cfg.questions.aspect_weights)
        loss = -total.mean()
        metrics = reward_metrics(rewards, per_aspect, total)
        if d.kl_weight > 0:
            kl = self.chain.penalty()
            loss = loss + d.kl_weight * kl
            metrics["kl"] = float(kl.detach())
        if d.l2_weight > 0:
            with timer("sampling"), torch.no_grad(), adapters_disabled(self.transformer), self._autocast():
                base = sample(self.generator, cond, GradWindow.none(cfg.sampling.num_steps), latents=noise).latents
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
        from drf.logging import Timer, peak_memory_mb
        from trainers.common import clip_gradients, reduce_gradients

        d, acc = self.cfg.drf, self.accelerator
        timer = Timer(acc.device)
        started = time.perf_counter()
        if acc.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(acc.device)
        self.optimizer.zero_grad(set_to_none=True)
        losses, summed, counts = [], {}, {}
        for micro in range(d.gradient_accumulation):
            loss, metrics = self.micro_step(step, micro, timer)
            losses.append(loss)
            for key, value in metrics.items():
                if math.isfinite(value):
                    summed[key] = summed.get(key, 0.0) + value
                    counts[key] = counts.get(key, 0) + 1
        loss_finite = all(bool(torch.isfinite(x)) for x in losses)
        finite = reduce_gradients(self.params, acc, loss_finite)
        grad_norm = clip_gradients(self.params, d.max_grad_norm) if finite else math.nan
        lr = self.lr_scheduler.get_last_lr()[0]
        if finite:
            self.optimizer.step()
            self.lr_scheduler.step()
            if self.ema is not None:
                self.ema.step(self.params)
        self.optimizer.zero_grad(set_to_none=True)
        out = {key: summed[key] / counts[key] for key in summed}
        if "reward/total" not in out:
            out["reward/total"] = math.nan
        out.update(
            {
                "loss": float(torch.stack(losses).float().mean()),
                "grad_norm": grad_norm,
                "lr": lr,
                "skipped": 0 if finite else 1,
                "time/step": time.perf_counter() - started,
                "memory/peak_mb": peak_memory_mb(acc.device),
            }
        )
        out.update(timer.metrics())
        return self._gather(out), finite

    def _gather(self, metrics: dict[str, float]) -> dict[str, float]:
        """Mean of each metric over processes (prompts differ per process, so so do the question ids)."""
        if self.accelerator.num_processes == 1:
            return metrics
        from accelerate.utils import gather_object

        merged: dict[str, list[float]] = {}
        for record in gather_object([metrics]):
            for key, value in record.items():
                merged.setdefault(key, []).append(value)
        return {key: sum(values) / len(values) for key, values in merged.items()}

    # ------------------------------------------------------------------------------------------------ outputs
    def save(self, step: int, metrics: dict[str, float] | None = None) -> Path:
        from drf.checkpoint import save_checkpoint, trainable_state_dict

        return save_checkpoint(
            self.run_dir,
            step,
            trainable=trainable_state_dict(self.transformer),
            optimizer=self.optimizer,
            lr_scheduler=self.lr_scheduler,
            ema=self.ema,
            data_state=self.data_state(step),
            config_yaml=self.config_yaml,
            metrics={k: v for k, v in (metrics or {}).items() if k.startswith("reward/") and "/q/" not in k},
            keep_last=self.cfg.drf.keep_last,
            accelerator=self.accelerator,
        )

    def evaluate(self, step: int) -> dict[str, float]:
        """Sample, save and score the eval prompts (main process), with EMA weights when EMA is on."""
        from trainers.common import ema_weights, sample_and_score

        metrics: dict[str, float] = {}
        if self.accelerator.is_main_process:
            prompts = self._eval_prompts()
            lg = self.cfg.logging
            with ema_weights(self.ema, self.params):
                metrics = sample_and_score(
                    self.generator,
                    self.critic,
                    prompts,
                    [self.question_sets[p] for p in prompts],
                    sampling=self.cfg.sampling,
                    seed=self.cfg.seed,
                    out_dir=self.run_dir / "samples" / f"step-{step}",
                    video_format=lg.video_format,
                    fps=lg.fps,
                    aspect_weights=self.cfg.questions.aspect_weights,
                    autocast=self._autocast,
                )
        self.accelerator.wait_for_everyone()
        return metrics

    def export(self) -> Path | None:
        """The trained weights in a form others load: the LoRA for diffusers, or the full transformer."""
        from trainers.common import ema_weights, export_lora

        path = None
        if self.accelerator.is_main_process:
            with ema_weights(self.ema, self.params):
                if self.cfg.drf.trainable == "lora":
                    path = export_lora(self.generator, self.run_dir / "lora")
                else:
                    path = self.run_dir / "transformer"
                    self.transformer.save_pretrained(path)
        self.accelerator.wait_for_everyone()
        return path

    # ------------------------------------------------------------------------------------------------ loop
    def train(self) -> Path:
        """Train from ``self.step`` to ``drf.steps``; returns the run directory."""
        from drf.logging import MetricsLogger, progress

        cfg, d, acc = self.cfg, self.cfg.drf, self.accelerator
        if acc.is_main_process:
            where = f" (resumed from {self.resumed_from})" if self.resumed_from else ""
            print(f"drf train: {cfg.name} -> {self.run_dir}{where}")
            for line in self._describe():
                print(f"  {line}")
        logger = MetricsLogger(
            self.run_dir,
            accelerator=acc,
            tensorboard=cfg.logging.tensorboard,
            project_name=cfg.name,
            resume_step=self.step if self.resumed_from else None,
        )
        first_eval: dict[str, float] = {}
        last_eval: dict[str, float] = {}
        with logger, progress(d.steps, "drf", accelerator=acc, initial=self.step) as bar:
            if cfg.logging.sample_every and self.step == 0:
                first_eval = self.evaluate(0)  # the base model: what every later sample is compared with
                logger.log(0, first_eval)
            while self.step < d.steps:
                metrics, finite = self.train_step(self.step)
                self.step += 1
                last = self.step == d.steps
                every = cfg.logging.sample_every
                if every and (self.step % every == 0 or last):
                    last_eval = self.evaluate(self.step)
                    metrics.update(last_eval)
                if self.step % cfg.logging.log_every == 0 or not finite or last:
                    logger.log(self.step, metrics)
                bar.update(self.step, metrics["reward/total"], skipped=metrics["skipped"])
                if not finite and acc.is_main_process:
                    print(f"step {self.step}: non-finite loss or gradient, step skipped")
                self.guard.update(self.step, finite)
                if (d.checkpoint_every and self.step % d.checkpoint_every == 0) or last:
                    self.save(self.step, metrics)
        if acc.is_main_process and first_eval and last_eval:
            for line in _before_after(first_eval, last_eval, self.step):
                print(line)
        if d.export:
            self.export()
        if cfg.logging.report and acc.is_main_process:
            from drf.report.builder import write_report

            print(f"report: {write_report(self.run_dir, critic=self.critic, max_videos=1)}")
        acc.wait_for_everyone()
        if acc.is_main_process:
            print(f"done: {self.run_dir}")
        return self.run_dir


def _before_after(before: dict[str, float], after: dict[str, float], step: int) -> list[str]:
    """Held-out reward of the base model (step 0) against the trained one, total and per aspect."""
    lines = [f"held-out reward, step 0 -> step {step}:"]
    for key in sorted(k for k in after if k.startswith("eval/reward/") and "/q/" not in k and k in before):
        name = key.removeprefix("eval/reward/").removeprefix("aspect/")
        lines.append(f"  {name:<10} {before[key]:+.4f} -> {after[key]:+.4f} ({after[key] - before[key]:+.4f})")
    return lines


def train(cfg: DRFRunConfig, resume: str | None = None) -> Path:
    """Run DRF training as configured (continuing from ``resume``: 'latest' or a checkpoint path)."""
    return DRFTrainer(cfg, resume).train()
