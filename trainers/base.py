"""The training loop every recipe runs: setup, resume, step-0 and periodic evaluation, logging, checkpoints, guards,
export, the before/after print and the report.

A recipe (DRF, GRPO, DiffusionNFT) subclasses ``Trainer``, names its config section and implements ``train_step``
and ``trained_steps`` (which sampling steps it trains, so Wan 2.2 knows which expert learns); everything a run does
around that step lives here once — rewards included — so every recipe writes the same run directory and compares on
the same evaluation.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from critics.registry import load_critic
from drf.checkpoint import (
    NonFiniteGuard,
    load_checkpoint,
    read_state,
    resolve_resume,
    save_checkpoint,
    trainable_state_dict,
)
from drf.config import changed_keys
from drf.errors import ConfigError
from drf.logging import MetricsLogger, Timer, peak_memory_mb, progress
from drf.models.registry import load_generator
from drf.reward_config import lists_critic
from drf.run_dir import RunDir
from drf.table import format_table, wrap_text
from trainers.data import prompt_index
from trainers.distributed import (
    clip_gradients,
    fsdp_plugin,
    full_state_dict,
    layout_of,
    make_accelerator,
    reduce_gradients,
    shard,
    shard_mesh,
)
from trainers.evaluation import sample_and_score, write_scores
from trainers.monitor import hacking_alarms
from trainers.optim import build_ema, build_lr_scheduler, build_optimizer, ema_weights
from trainers.paired import summary as paired_summary
from trainers.plugins import REPORTERS, load_judge, resolve
from trainers.rewards import Scored, build_rewards
from trainers.run import (
    batch_arithmetic,
    critic_config_for,
    keep_global_batch,
    prepare_run,
    removed_on_failure,
    run_dir_of,
)
from trainers.weights import (
    by_expert,
    choose_experts,
    count_parameters,
    load_adapter_weights,
    save_full,
    setup_trainable,
)


class Trainer:
    """Builds a run from its config, optionally resumes, and trains with ``train()``; subclasses add ``train_step``."""

    section = ""  # the recipe's config section ("drf", "grpo" or "nft"), also its progress-bar name

    def __init__(self, cfg: Any, resume: str | None = None, *, generator: Any = None, critic: Any = None) -> None:
        """``generator``/``critic``: already-built models to use instead of building them from ``cfg`` (tests and
        benches share one set of tiny models this way); the generator must not carry an adapter yet."""
        from accelerate.utils import set_seed

        self.cfg = cfg
        train_cfg = self.train_cfg
        self.accelerator = make_accelerator(train_cfg.mixed_precision)
        acc = self.accelerator
        set_seed(cfg.seed)  # LoRA initialisation and anything else drawn from the global streams
        self.threads = cfg.runtime.apply()
        resume_path = resolve_resume(run_dir_of(cfg), resume) if resume is not None else None
        if resume_path is not None:  # before the config is written: a resume on other processes may change it
            keep_global_batch(train_cfg, self.section, read_state(resume_path), acc, resume_path)
        with removed_on_failure(run_dir_of(cfg), acc):  # a start that fails leaves no half-made run behind
            setup = prepare_run(cfg, acc, resume)
            self.run_dir, self.splits, self.question_sets = setup.run_dir, setup.splits, setup.question_sets
            self.config_yaml = setup.config_yaml

            if generator is None:
                generator = load_generator(cfg.model, device=acc.device, with_lora=False)
            self.generator = generator
            self.experts = choose_experts(self.generator, cfg.model.train_experts, self.touched_experts())
            self.expert_steps = self.steps_of_experts()
            self.transformer = self.generator.trainable_module(self.experts)
            self.params = setup_trainable(self.transformer, train_cfg, self.section)
            if cfg.model.lora:
                if train_cfg.trainable != "lora":
                    raise ConfigError(f"model.lora starts a LoRA run; set {self.section}.trainable: lora")
                load_adapter_weights(
                    self.transformer, cfg.model.lora, self.generator.lora_files, self.generator.expert_labels
                )
            if train_cfg.gradient_checkpointing:
                self.transformer.enable_gradient_checkpointing()
            plugin = fsdp_plugin(acc)
            self.layout = layout_of(acc, plugin)
            self.sharded = plugin is not None
            if plugin is not None:
                if train_cfg.optimizer == "adamw8bit":
                    raise ConfigError(f"{self.section}.optimizer adamw8bit: bitsandbytes' 8-bit AdamW does not take "
                                      f"FSDP's sharded parameters; set {self.section}.optimizer=adamw (sharding "
                                      "already divides its state by the number of processes)")  # fmt: skip
                shard(self.transformer, plugin, shard_mesh(acc, self.layout))
                self.params = [p for p in self.transformer.parameters() if p.requires_grad]  # now each one's shard

            if critic is None and lists_critic(cfg.rewards):
                critic = load_critic(critic_config_for(cfg.critic, acc, self.run_dir))
            self.critic = critic
            augment = cfg.critic.augment if cfg.critic is not None else None  # no critic: section, no critic reward
            self.rewards = build_rewards(cfg.rewards, critic, cfg.questions.aspect_weights, acc.device, augment)
            self.judge = load_judge(train_cfg.judge)
            self.setup_recipe()

            self.optimizer = build_optimizer(self.params, train_cfg, self.section)
            self.lr_scheduler = build_lr_scheduler(self.optimizer, train_cfg, self.updates_per_step())
            self.ema = build_ema(self.params, train_cfg)
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
                    stateful=self.recipe_stateful(),
                )
                self.step = int(state["step"])
                self.load_recipe_state(state.get("extra", {}))
                if state["config_yaml"] != self.config_yaml and acc.is_main_process:
                    keys = ", ".join(changed_keys(state["config_yaml"], self.config_yaml))
                    print(f"note: the config differs from the one saved in {resume_path} ({keys}); continuing with it")

    # ------------------------------------------------------------------------------------------------ recipe hooks
    @property
    def train_cfg(self) -> Any:
        return getattr(self.cfg, self.section)

    def updates_per_step(self) -> int:
        """Optimiser updates one ``train_step`` makes (the learning-rate schedule spans steps x this)."""
        return 1

    def trained_steps(self) -> set[int]:
        """Sampling steps whose denoiser calls carry the gradient this recipe trains with, over the whole run."""
        raise NotImplementedError

    def touched_experts(self) -> set[str]:
        """The experts (pipeline names) that run those steps; ``model.train_experts: auto`` trains exactly these."""
        experts = self.generator.expert_of_steps(self.cfg.sampling.num_steps)
        return {experts[i] for i in self.trained_steps()}

    def steps_of_experts(self) -> list[int]:
        """The sampling steps whose denoiser trains: all of them, or those of the one Wan 2.2 expert chosen
        (``model.train_experts``). Windows a recipe draws stay inside these, so no draw lands where nothing trains."""
        experts = self.generator.expert_of_steps(self.cfg.sampling.num_steps)
        return [i for i, name in enumerate(experts) if name in self.experts]

    def frozen_expert(self) -> bool:
        """Whether a denoiser of this model stays frozen (a two-expert model training one of them)."""
        return len(self.experts) < len(self.generator.expert_names())

    def setup_recipe(self) -> None:
        """Build what the recipe needs besides generator and critic (probes, reward models); before the optimiser."""

    def recipe_state(self) -> dict[str, Any]:
        """JSON state the recipe carries across steps (saved in each checkpoint's ``extra``)."""
        return {}

    def load_recipe_state(self, state: dict[str, Any]) -> None:
        """Restore what ``recipe_state`` saved."""

    def recipe_stateful(self) -> dict[str, Any]:
        """Named objects with tensor state (``state_dict``/``load_state_dict``) saved in each checkpoint."""
        return {}

    def window_description(self) -> str:
        """One line saying which sampling steps carry gradient."""
        raise NotImplementedError

    def train_step(self, step: int) -> tuple[dict[str, float], bool]:
        """One optimiser step -> (metrics with at least ``reward/total``, finite). A non-finite step changes nothing."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ helpers
    def _autocast(self):
        return self.accelerator.autocast()

    def score_videos(
        self, videos: list[str], latents: torch.Tensor, picked: Any, timer: Any, seeds: list[int],
        decode_context: Any = None,
    ) -> Scored:
        """The run's rewards of final ``latents`` (one row per video prompt), decoding frames ``picked`` only when a
        reward reads frames; gradients flow where the chain and the rewards carry them. ``seeds``: one per video,
        a pure function of (seed, step, micro-batch, video), for rewards that draw at random."""
        frames = None
        if self.rewards.reads_frames:
            with timer("decode"), decode_context or contextlib.nullcontext():
                frames = self.generator.decode(latents, picked).float()  # [B,T,3,H,W] in [0,1]
        with timer("rewards"):
            question_sets = [self.question_sets[p] for p in videos]
            return self.rewards.score(videos, question_sets, latents=latents, frames=frames, seeds=seeds)

    def _describe(self) -> list[str]:
        cfg, d = self.cfg, self.train_cfg
        f = cfg.sampling.frames
        frames = f"{f.policy} (n={f.n}) of {cfg.model.num_frames} frames at {cfg.model.height}x{cfg.model.width}"
        lines = batch_arithmetic(
            d, self.accelerator.num_processes, len(self.splits.train), self.window_description(), frames,
            getattr(d, "group_size", 1),
        )  # fmt: skip
        what = (
            f"lora r={d.lora_rank} on {', '.join(d.lora_target_modules)}"
            if d.trainable == "lora"
            else (f"full: {', '.join(d.full_modules)}")
        )
        experts = f" of {' and '.join(self.experts)}" if self.experts != ["transformer"] else ""
        lines.append(f"trainable: {what}{experts} ({count_parameters(self.params):,} parameters)")
        if self.frozen_expert():
            frozen = [name for name in self.generator.expert_names() if name not in self.experts]
            lines.append(f"experts: {', '.join(self.experts)} trains (model.train_experts "
                         f"{cfg.model.train_experts}), {', '.join(frozen)} stays frozen; the window above is drawn "
                         "where the trained one runs")  # fmt: skip
        lines.append("rewards: " + ", ".join(f"{r.name} x {r.weight:g} (reads {r.reads_what})" for r in cfg.rewards))
        lines.append(f"device: {self.accelerator.device}, {self.threads} CPU threads (runtime.threads)")
        lines.append(self.layout.describe())
        every = cfg.logging.sample_every
        source = "held-out" if self.splits.eval else "train (no eval split)"
        judge = f", judged by the {d.judge} oracle" if d.judge else ""
        lines.append(
            f"eval: {len(self._eval_prompts()) // d.eval_seeds} {source} prompts x {d.eval_seeds} seeds every {every} "
            f"steps{judge}"
            if every
            else "eval: off (logging.sample_every = 0)"
        )
        return lines

    def _eval_prompts(self) -> list[str]:
        """The held-out prompts, each ``eval_seeds`` times (video i gets the noise of stream i, so repeats differ)."""
        prompts = self.splits.eval or self.splits.train
        return prompts[: self.train_cfg.eval_max_prompts] * self.train_cfg.eval_seeds

    def _prompts_for(self, step: int, micro: int) -> list[str]:
        acc, d = self.accelerator, self.train_cfg
        b = d.prompts_per_step
        start = ((step * d.gradient_accumulation + micro) * acc.num_processes + acc.process_index) * b
        n = len(self.splits.train)
        return [self.splits.train[prompt_index(self.cfg.seed, start + i, n)] for i in range(b)]

    def data_state(self, step: int) -> dict[str, int]:
        """Where the prompt stream stands, and the batch layout that drew it (a resume on another number of
        processes keeps its global batch, ``trainers.run.keep_global_batch``)."""
        d, processes = self.train_cfg, self.accelerator.num_processes
        position = step * d.gradient_accumulation * processes * d.prompts_per_step
        return {
            "position": position,
            "epoch": position // len(self.splits.train),
            "processes": processes,
            "prompts_per_step": d.prompts_per_step,
            "gradient_accumulation": d.gradient_accumulation,
        }

    def apply_gradients(self, loss_finite: bool) -> tuple[bool, float]:
        """Average, check, clip and apply the accumulated gradients -> (finite, grad norm before clipping).

        A non-finite step leaves weights, optimiser and EMA untouched; gradients are cleared either way.
        """
        finite = reduce_gradients(self.params, self.accelerator, loss_finite, sharded=self.sharded)
        grad_norm = clip_gradients(self.params, self.train_cfg.max_grad_norm) if finite else math.nan
        if finite:
            self.optimizer.step()
            self.lr_scheduler.step()
            if self.ema is not None:
                self.ema.step(self.params)
        self.optimizer.zero_grad(set_to_none=True)
        return finite, grad_norm

    def start_step(self) -> Any:
        """A phase timer for one optimiser step; also restarts the peak-memory count so it is this step's."""
        if self.accelerator.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.accelerator.device)
        return Timer(self.accelerator.device)

    def finish_step(self, out: dict[str, float], finite: bool, timer: Any, started: float) -> tuple[dict, bool]:
        """Add what every recipe logs per step (skip flag, step time, peak memory, phase times) and gather the
        metrics across processes -> (metrics, finite)."""
        out.setdefault("reward/total", math.nan)
        out.update(
            {
                "skipped": 0 if finite else 1,
                "time/step": time.perf_counter() - started,
                "memory/peak_mb": peak_memory_mb(self.accelerator.device),
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
            extra=self.recipe_state(),
            stateful=self.recipe_stateful(),
            keep_last=self.train_cfg.keep_last,
            accelerator=self.accelerator,
            finite_step=not (metrics or {}).get("skipped", 0),
            module=self.transformer,
        )

    def evaluate(self, step: int) -> dict[str, float]:
        """Sample, save and score the eval prompts, with EMA weights when EMA is on; returns the metrics on the main
        process ({} on the others).

        Each process takes an equal block of the videos (the last one padded with repeats that are not kept), so a
        multi-process evaluation takes 1/N of the time and a sharded transformer runs equally often everywhere; a
        video's noise depends on its index only, so the videos equal a one-process evaluation's.
        """
        acc, d, lg = self.accelerator, self.train_cfg, self.cfg.logging
        prompts = self._eval_prompts()
        per = -(-len(prompts) // acc.num_processes)
        first = acc.process_index * per
        mine = prompts[first : first + per]
        keep = len(mine)
        mine += prompts[-1:] * (per - keep)
        out_dir = RunDir(self.run_dir).samples(step)
        with ema_weights(self.ema, self.params):
            records = sample_and_score(
                self.generator,
                self.rewards,
                mine,
                [self.question_sets[p] for p in mine],
                sampling=self.cfg.sampling,
                seed=self.cfg.seed,
                out_dir=out_dir,
                video_format=lg.video_format,
                fps=lg.fps,
                autocast=self._autocast,
                judge=self.judge,
                batch_size=d.eval_batch_size,
                indices=range(first, first + per),
                keep=keep,
            )
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            records = gather_object(records)
        metrics: dict[str, float] = {}
        if acc.is_main_process:
            metrics = write_scores(out_dir, records)
            if self.judge is not None:
                metrics.update(self.hacking_check(step))
        acc.wait_for_everyone()
        return metrics

    def hacking_check(self, step: int) -> dict[str, float]:
        """Compare this evaluation with the previous one (same prompts, same noise): print a one-line warning for each
        aspect whose critic reward rose by more than its standard error while the judge fell by more than two of its
        own (``trainers.monitor``), and return the count (``eval/hacking/alarms``) and the aspects
        (``eval/hacking/<aspect>``) as metrics."""
        run = RunDir(self.run_dir)
        earlier = [at for at in run.sample_steps() if at < step]
        if not earlier:
            return {}
        previous = max(earlier)

        def records(at: int) -> list[dict]:
            path = run.scores(at)
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []

        alarms = hacking_alarms(records(previous), records(step), previous, step)
        for alarm in alarms:
            print(alarm.message())
        return {"eval/hacking/alarms": float(len(alarms)), **{f"eval/hacking/{a.aspect}": 1.0 for a in alarms}}

    def export(self) -> Path | None:
        """The trained weights in a form others load: the LoRA for diffusers, or the full transformer. A sharded run
        first gathers them whole onto the main process."""
        lora = self.train_cfg.trainable == "lora"
        path = None
        with ema_weights(self.ema, self.params):
            whole = full_state_dict(self.transformer, trainable_only=lora) if self.sharded else None
            if self.accelerator.is_main_process:
                if lora:
                    weights = None if whole is None else by_expert(self.transformer, whole)
                    path = self.generator.save_lora(RunDir(self.run_dir).lora, weights=weights)
                else:
                    path = RunDir(self.run_dir).transformer
                    save_full(self.transformer, path, whole)
        self.accelerator.wait_for_everyone()
        return path

    # ------------------------------------------------------------------------------------------------ loop
    def train(self) -> Path:
        """Train from ``self.step`` to the section's ``steps``; returns the run directory."""
        cfg, d, acc = self.cfg, self.train_cfg, self.accelerator
        if acc.is_main_process:
            where = f" (resumed from {self.resumed_from})" if self.resumed_from else ""
            print(f"{self.section} train: {cfg.name} -> {self.run_dir}{where}")
            for line in self._describe():
                print(f"  {line}")
        logger = MetricsLogger(
            self.run_dir,
            accelerator=acc,
            trackers=cfg.logging.trackers,
            project_name=cfg.name,
            resume_step=self.step if self.resumed_from else None,
        )
        last_eval: dict[str, float] = {}
        with logger, progress(d.steps, self.section, accelerator=acc, initial=self.step) as bar:
            if cfg.logging.sample_every and self.step == 0:
                logger.log(0, self.evaluate(0))  # the base model: what every later sample is compared with
                logger.log_videos(0, RunDir(self.run_dir).samples(0), fps=cfg.logging.fps)
            while self.step < d.steps:
                metrics, finite = self.train_step(self.step)
                self.step += 1
                last = self.step == d.steps
                every = cfg.logging.sample_every
                if every and (self.step % every == 0 or last):
                    last_eval = self.evaluate(self.step)
                    metrics.update(last_eval)
                    logger.log_videos(self.step, RunDir(self.run_dir).samples(self.step), cfg.logging.fps)
                if self.step % cfg.logging.log_every == 0 or not finite or last:
                    logger.log(self.step, metrics)
                bar.update(self.step, metrics["reward/total"], skipped=metrics["skipped"])
                if not finite and acc.is_main_process:
                    print(f"step {self.step}: non-finite loss or gradient, step skipped")
                self.guard.update(self.step, finite)
                if (d.checkpoint_every and self.step % d.checkpoint_every == 0) or last:
                    self.save(self.step, metrics)
        if acc.is_main_process and last_eval:
            for line in before_after(self.run_dir, self.step):
                print(line)
        if d.export:
            self.export()
        if cfg.logging.report and acc.is_main_process:
            for write in REPORTERS.values():
                print(f"report: {resolve(write)(self.run_dir, critic=self.critic, max_videos=1)}")
        acc.wait_for_everyone()
        if acc.is_main_process:
            print(f"done: {self.run_dir}")
        return self.run_dir


def before_after(run_dir: Path, step: int) -> list[str]:
    """Held-out reward of the base model (step 0) against the trained one, named by the run's rewards (each one when
    there are several, the critic's per aspect), then the
    judge's alignment score, the critic's reward over the judge's aspects and the critic-judge gap, each as a change
    paired per prompt with its standard error ([] without both evaluations)."""
    run = RunDir(run_dir)
    if not (run.scores(0).is_file() and run.scores(step).is_file()):
        return []
    before, after = (json.loads(run.scores(at).read_text(encoding="utf-8")) for at in (0, step))
    headers = ("held-out measure", "step 0", f"step {step}", "change", "± SE", "change/SE", "prompts")
    rows = [c.cells() for c in paired_summary(before, after)]
    title = f"held-out reward, step 0 -> step {step}: change ± standard error (SE), paired per prompt"
    return [*wrap_text(title), *format_table(headers, rows, numeric=range(1, 7))]


def finite_all(losses: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(x)) for x in losses)
