"""What every training recipe shares: processes and precision, trainable weights, optimiser, data order, guards, export.

DRF and GRPO differ in how they turn a rollout into a loss; everything around that (which weights train, how they are
optimised and checkpointed, how prompts are read and ordered, how a non-finite step is skipped, how videos are sampled
and scored for evaluation, how the LoRA is exported for diffusers) lives here once.

Multi-process training (``accelerate launch``) averages gradients with one all-reduce per optimiser step instead of
wrapping the denoiser in ``DistributedDataParallel``: the generator keeps calling its own modules, the sampling
chain's per-step checkpointing stays untouched, and the same reduction carries the non-finite flag to every process.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from critics.config import CriticConfig
from critics.tiny import build_tiny_critic
from drf.config import LoggingConfig, ModelConfig, SamplingConfig, dump_config, invalid, save_config
from drf.errors import ConfigError, InputError
from drf.frames import frames_from_config
from drf.grad_window import GradWindow
from drf.rewards import RewardOutput, aggregate, reward_metrics
from drf.sampling import sample
from drf.video_io import video_filename, write_video
from prompts.config import QuestionsConfig
from prompts.registry import decompose_all
from trainers.plugins import JUDGES

LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")


# ----------------------------------------------------------------------------------------------------------------
# config shared by the trainers


@dataclass
class TrainerConfig:
    """Knobs every recipe has: steps and batch arithmetic, trainable weights, optimiser, precision, checkpoints."""

    steps: int = field(default=100, metadata={"help": "Optimiser steps to train for."})
    prompts_per_step: int = field(default=1, metadata={"help": "Prompts (videos) per micro-batch on each process."})
    gradient_accumulation: int = field(
        default=1, metadata={"help": "Micro-batches whose gradients are summed before each optimiser step."}
    )
    trainable: Literal["lora", "full"] = field(
        default="lora", metadata={"help": "lora: train a LoRA adapter; full: train the parameters in full_modules."}
    )
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank r."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; the update is scaled by alpha / r."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"],
        metadata={"help": "Module names (or name suffixes) of the transformer that get LoRA layers."},
    )
    full_modules: list[str] = field(
        default_factory=lambda: ["blocks.*"],
        metadata={"help": "Glob patterns of transformer parameter names trained when trainable is full."},
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute each transformer block in backward (less memory, more time)."}
    )
    mixed_precision: Literal["no", "bf16"] = field(
        default="no",
        metadata={"help": "Autocast the denoiser to bf16 (through accelerate); trainable weights stay fp32."},
    )
    optimizer: Literal["adamw", "adamw8bit"] = field(
        default="adamw", metadata={"help": "adamw (torch) or adamw8bit (bitsandbytes, the quant extra)."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW decoupled weight decay."})
    lr_schedule: str = field(
        default="constant_with_warmup", metadata={"help": f"Learning-rate schedule: {', '.join(LR_SCHEDULES)}."}
    )
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps at the start of the schedule."})
    max_grad_norm: float = field(
        default=1.0,
        metadata={"help": "Clip the global gradient norm to this; 0 disables clipping (norm still logged)."},
    )
    ema: bool = field(default=False, metadata={"help": "Keep an exponential moving average of the trainable weights."})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay per optimiser step."})
    checkpoint_every: int = field(
        default=50, metadata={"help": "Save a checkpoint every this many steps (and at the end); 0 = only at the end."}
    )
    keep_last: int = field(default=3, metadata={"help": "Checkpoints kept on disk (older ones are deleted)."})
    max_consecutive_skips: int = field(
        default=5, metadata={"help": "Stop after this many optimiser steps in a row had a non-finite loss or gradient."}
    )
    eval_max_prompts: int = field(
        default=4, metadata={"help": "Eval prompts sampled and scored every logging.sample_every steps."}
    )
    judge: str = field(
        default="",
        metadata={"help": "Independent measure scored on every evaluation video next to the critic, never a training "
                  "reward: '' none, 'toyworld' the toy-world pixel oracle (eval/oracle/total, eval/oracle/aspect/*)."},
    )  # fmt: skip
    export: bool = field(
        default=True,
        metadata={"help": "At the end write the trained weights: run_dir/lora/ (diffusers load_lora_weights format) "
                  "or, for full fine-tuning, run_dir/transformer/ (save_pretrained)."},
    )  # fmt: skip

    def validate(self) -> None:
        positive = ("steps", "prompts_per_step", "gradient_accumulation", "lora_rank", "keep_last",
                    "max_consecutive_skips")  # fmt: skip
        for key in positive:
            if getattr(self, key) < 1:
                raise invalid(key, f"must be >= 1 (got {getattr(self, key)})")
        for key in ("warmup_steps", "checkpoint_every", "eval_max_prompts", "weight_decay", "max_grad_norm"):
            if getattr(self, key) < 0:
                raise invalid(key, f"must be >= 0 (got {getattr(self, key)})")
        if not self.learning_rate > 0:
            raise invalid("learning_rate", f"must be > 0 (got {self.learning_rate})")
        if self.lr_schedule not in LR_SCHEDULES:
            raise invalid("lr_schedule", f"is {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
        if not 0 <= self.ema_decay < 1:
            raise invalid("ema_decay", f"must be in [0, 1) (got {self.ema_decay})")
        if not 0 <= self.lora_dropout < 1:
            raise invalid("lora_dropout", f"must be in [0, 1) (got {self.lora_dropout})")
        if self.judge and self.judge not in JUDGES:
            raise invalid("judge", f"is {self.judge!r}; choose one of {', '.join(repr(j) for j in ['', *JUDGES])}")
        if self.trainable == "lora" and not self.lora_target_modules:
            raise invalid("lora_target_modules", "is empty; list module names such as [to_q, to_k, to_v, to_out.0]")
        if self.trainable == "full" and not self.full_modules:
            raise invalid("full_modules", "is empty; list parameter-name patterns such as ['blocks.1.*']")


@dataclass
class RunConfig:
    """The sections every `drf train` config has; a recipe's run config adds its own section (``drf:``/``grpo:``)."""

    name: str = field(default="run", metadata={"help": "Run name; the run directory is logging.output_dir/name."})
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

    def validate(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise invalid("name", f"must be a plain directory name (got {self.name!r})")


# ----------------------------------------------------------------------------------------------------------------
# processes and precision


def make_accelerator(mixed_precision: str) -> Any:
    """An ``Accelerator`` for devices, process ranks and autocast; trackers belong to ``drf.logging.MetricsLogger``."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision=mixed_precision)


def reduce_gradients(params: Sequence[nn.Parameter], accelerator: Any, loss_finite: bool) -> bool:
    """Average gradients over processes (one all-reduce) and say whether the step is finite on every process.

    The loss flag rides along as one extra element (0 or NaN), so every process reaches the same verdict. Parameters
    that received no gradient count as zero gradient.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.detach().reshape(-1).float() for g in grads])
    flag = torch.tensor([0.0 if loss_finite else math.nan], device=flat.device)
    flat = torch.cat([flat, flag])
    if accelerator is not None and accelerator.num_processes > 1:
        flat = accelerator.reduce(flat, reduction="mean")
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n
    return bool(torch.isfinite(flat).all())


def clip_gradients(params: Sequence[nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm to ``max_norm`` (0 = no clipping) and return the norm before clipping."""
    limit = max_norm if max_norm > 0 else math.inf
    return float(torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], limit))


# ----------------------------------------------------------------------------------------------------------------
# trainable weights


def setup_trainable(transformer: nn.Module, cfg: TrainerConfig, section: str) -> list[nn.Parameter]:
    """Freeze ``transformer`` except a LoRA adapter (``add_adapter``) or the parameters named by ``full_modules``.

    LoRA weights are kept in float32 whatever the model dtype (peft casts the input of each LoRA branch), so small
    updates are not lost to bf16 rounding. Returns the trainable parameters in a fixed order.
    """
    transformer.requires_grad_(False)
    if cfg.trainable == "lora":
        from peft import LoraConfig

        lora = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_target_modules),
            init_lora_weights=True,
        )
        try:
            transformer.add_adapter(lora)
        except ValueError as err:
            first = str(err).strip().splitlines()[0]
            raise ConfigError(f"{section}.lora_target_modules {cfg.lora_target_modules}: {first}") from None
        params = [p for p in transformer.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()
        return params
    names = [name for name, _ in transformer.named_parameters()]
    chosen = {n for n in names if any(fnmatch.fnmatchcase(n, pattern) for pattern in cfg.full_modules)}
    if not chosen:
        raise ConfigError(
            f"{section}.full_modules {cfg.full_modules} matches no transformer parameter; names look like {names[0]!r}"
        )
    params = []
    for name, p in transformer.named_parameters():
        if name in chosen:
            p.requires_grad_(True)
            params.append(p)
    return params


def count_parameters(params: Sequence[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


@contextmanager
def adapters_disabled(module: nn.Module) -> Iterator[None]:
    """Run ``module`` as the frozen base model: its LoRA adapters are switched off inside the block."""
    module.disable_adapters()
    try:
        yield
    finally:
        module.enable_adapters()


# ----------------------------------------------------------------------------------------------------------------
# optimiser, schedule, EMA


def build_optimizer(params: Sequence[nn.Parameter], cfg: TrainerConfig, section: str) -> torch.optim.Optimizer:
    kwargs = dict(
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
        weight_decay=cfg.weight_decay,
    )
    if cfg.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError(f"{section}.optimizer 'adamw8bit' needs bitsandbytes: pip install 'drf[quant]'") from None
        return bnb.optim.AdamW8bit(list(params), **kwargs)
    return torch.optim.AdamW(list(params), **kwargs)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainerConfig, updates_per_step: int = 1) -> Any:
    """The schedule over every optimiser update of the run (``steps`` x updates per step; warm-up in updates)."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        cfg.lr_schedule, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps * updates_per_step
    )


def build_ema(params: Sequence[nn.Parameter], cfg: TrainerConfig) -> Any:
    """diffusers' ``EMAModel`` over the trainable parameters, or None when EMA is off."""
    if not cfg.ema:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel(list(params), decay=cfg.ema_decay)


@contextmanager
def ema_weights(ema: Any, params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Swap the EMA weights in for evaluation or export, and the training weights back afterwards."""
    if ema is None:
        yield
        return
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)


# ----------------------------------------------------------------------------------------------------------------
# prompts


@dataclass
class PromptSplits:
    train: list[str]
    eval: list[str]


def _read_jsonl_prompts(path: Path) -> PromptSplits:
    splits = PromptSplits([], [])
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: invalid JSON ({err.msg}); write one object per line") from None
        if not isinstance(record, dict):
            raise InputError(f'{where}: expected an object like {{"prompt": "...", "split": "train"}}')
        prompt = record.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{where}: 'prompt' must be a non-empty string")
        split = record.get("split", "train")
        if split not in ("train", "eval"):
            raise InputError(f"{where}: 'split' is {split!r}; use 'train' or 'eval'")
        getattr(splits, split).append(prompt.strip())
    return splits


def read_prompts(path: str | Path) -> PromptSplits:
    """Prompts from a ``.txt`` file (one per line, ``#`` comments; all train) or ``.jsonl`` (``prompt``, ``split``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompts file {path} does not exist; give a .txt (one prompt a line) or .jsonl file")
    if path.suffix == ".jsonl":
        return _read_jsonl_prompts(path)
    if path.suffix != ".txt":
        raise InputError(f"prompts file {path}: unsupported type {path.suffix!r}; use .txt or .jsonl")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return PromptSplits([line for line in lines if line and not line.startswith("#")], [])


def load_prompt_splits(train_file: str, eval_file: str) -> PromptSplits:
    """Train prompts from ``train_file``; eval prompts from its eval split plus every prompt of ``eval_file``."""
    splits = read_prompts(train_file)
    if eval_file:
        extra = read_prompts(eval_file)
        splits.eval.extend(extra.train + extra.eval)
    if not splits.train:
        raise InputError(f"prompts file {train_file} has no training prompts")
    return splits


def prompt_index(seed: int, position: int, num_prompts: int) -> int:
    """The prompt at ``position`` of an endless stream: a fresh seeded permutation of all prompts per epoch.

    A pure function of the position, so a resumed run reads exactly the prompts the uninterrupted run would have.
    """
    epoch, offset = divmod(position, num_prompts)
    order = torch.randperm(num_prompts, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return int(order[offset])


def stream_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, step, micro-batch, rank), stable across processes and resumes."""
    value = 0
    for part in parts:
        value = (value * 6_364_136_223_846_793_005 + part + 1_442_695_040_888_963_407) % (1 << 63)
    return value


# ----------------------------------------------------------------------------------------------------------------
# run directory


def check_fresh_run_dir(run_dir: Path) -> None:
    """Refuse to start over a run that already trained; resuming it is explicit."""
    if (run_dir / "checkpoints").is_dir() or (run_dir / "metrics.jsonl").is_file():
        raise InputError(
            f"run directory {run_dir} already holds a run; pass --resume latest to continue it, "
            "or choose another name (--set name=...)"
        )


@dataclass
class RunSetup:
    """What a recipe needs before models load: where it writes, its prompts and their question sets."""

    run_dir: Path
    splits: PromptSplits
    question_sets: dict[str, Any]
    config_yaml: str


def run_dir_of(cfg: Any) -> Path:
    return Path(cfg.logging.output_dir) / cfg.name


def prepare_run(cfg: Any, accelerator: Any, resume: str | None) -> RunSetup:
    """Create ``output_dir/name`` with ``config.yaml`` and ``questions.jsonl`` (every train and eval prompt decomposed
    once, on the main process; the others read the file). ``cfg`` needs name, prompts, eval_prompts, questions and
    logging sections."""
    run_dir = run_dir_of(cfg)
    if resume is None and accelerator.is_main_process:
        check_fresh_run_dir(run_dir)
    splits = load_prompt_splits(cfg.prompts, cfg.eval_prompts)
    everything = list(dict.fromkeys(splits.train + splits.eval))
    if accelerator.is_main_process:
        save_config(cfg, run_dir)
        decompose_all(everything, cfg.questions, run_dir)
    accelerator.wait_for_everyone()
    question_sets = dict(zip(everything, decompose_all(everything, cfg.questions, run_dir)))
    return RunSetup(run_dir, splits, question_sets, dump_config(cfg))


def batch_arithmetic(
    cfg: TrainerConfig, num_processes: int, num_train_prompts: int, window: str, frames: str, videos_per_prompt: int = 1
) -> list[str]:
    """The start-up summary of how prompts become optimiser steps (ddpo-pytorch style)."""
    per_step = cfg.prompts_per_step * cfg.gradient_accumulation * num_processes
    total = per_step * cfg.steps
    group = f" x {videos_per_prompt} videos per prompt" if videos_per_prompt > 1 else ""
    return [
        f"batch: {cfg.prompts_per_step} prompts per micro-batch x {cfg.gradient_accumulation} accumulation x "
        f"{num_processes} processes{group} = {per_step * videos_per_prompt} videos per optimiser step",
        f"steps: {cfg.steps} -> {total * videos_per_prompt} videos = {total / num_train_prompts:.2f} passes over "
        f"{num_train_prompts} train prompts",
        f"window: {window}",
        f"frames: {frames}",
    ]


def critic_config_for(critic_cfg: Any, accelerator: Any, run_dir: Path) -> Any:
    """The critic config one process loads: its own GPU under ``accelerate launch``, and a tiny critic built once.

    A tiny critic (random, seeded) is written to ``run_dir/tiny_critic`` by the main process and loaded from there by
    all, so every process scores with the same weights (each building its own would write where only the main
    process may save).
    """
    import dataclasses

    changes: dict[str, Any] = {}
    if critic_cfg.device == "cuda" and accelerator.num_processes > 1:
        changes["device"] = str(accelerator.device)
    if critic_cfg.tiny:
        directory = run_dir / "tiny_critic"
        if accelerator.is_main_process and not (directory / "config.json").is_file():
            build_tiny_critic(critic_cfg.family, directory)
        accelerator.wait_for_everyone()
        changes.update(tiny=False, path=str(directory))
    return dataclasses.replace(critic_cfg, **changes)


# ----------------------------------------------------------------------------------------------------------------
# export


def export_lora(generator: Any, out_dir: str | Path) -> Path:
    """Write the generator's LoRA as diffusers' ``pytorch_lora_weights.safetensors`` (``WanPipeline.load_lora_weights``)."""
    from diffusers import WanPipeline
    from peft.utils import get_peft_model_state_dict

    transformer = generator.trainable_module()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in get_peft_model_state_dict(transformer).items()}
    WanPipeline.save_lora_weights(
        out_dir,
        transformer_lora_layers=state,
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(),
    )
    return out_dir / "pytorch_lora_weights.safetensors"


# ----------------------------------------------------------------------------------------------------------------
# evaluation: sample, save and score


def judge_metrics(verdict: dict[str, Any], question_set: Any) -> dict[str, float]:
    """``oracle/total`` and ``oracle/aspect/<aspect>``: the mean 0/1 score of the questions the judge measured; with
    an alignment verdict also ``oracle/alignment/total`` and ``oracle/alignment/aspect/<aspect>`` (object, colour,
    count, ... — the judge's own alignment aspects, where an object it cannot find counts as wrong)."""
    scores = verdict["scores"]
    metrics: dict[str, float] = {}
    if scores:
        by_aspect: dict[str, list[int]] = {}
        for q in question_set.questions:
            if q.id in scores:
                by_aspect.setdefault(q.aspect, []).append(scores[q.id])
        metrics["oracle/total"] = sum(scores.values()) / len(scores)
        metrics.update({f"oracle/aspect/{a}": sum(v) / len(v) for a, v in by_aspect.items()})
    alignment = verdict.get("alignment") or {}
    if alignment.get("mean") is not None:
        metrics["oracle/alignment/total"] = alignment["mean"]
        metrics.update({f"oracle/alignment/aspect/{a}": v for a, v in alignment["by_aspect"].items()})
    return metrics


def critic_by_judge_aspect(rewards: dict[str, float], aspect_of: dict[str, str]) -> dict[str, float]:
    """The critic's mean reward over the questions of each of the judge's aspects, so that critic and judge can be
    compared aspect by aspect (``rewards``: {question id: reward}; ``aspect_of``: {question id: judge aspect})."""
    grouped: dict[str, list[float]] = {}
    for qid, aspect in aspect_of.items():
        if qid in rewards and math.isfinite(rewards[qid]):
            grouped.setdefault(aspect, []).append(rewards[qid])
    return {aspect: sum(v) / len(v) for aspect, v in sorted(grouped.items())}


@torch.no_grad()
def sample_and_score(
    generator: Any,
    critic: Any,
    prompts: Sequence[str],
    question_sets: Sequence[Any],
    *,
    sampling: Any,
    seed: int,
    out_dir: str | Path,
    video_format: str,
    fps: int,
    aspect_weights: dict[str, float] | None,
    autocast: Any = None,
    judge: Any = None,
) -> dict[str, float]:
    """Sample one video per prompt (fixed noise per prompt, so evaluations compare), write it and its scores.

    Writes ``out_dir/<index>_<prompt words>.<format>`` and ``out_dir/scores.json`` (total, per aspect and per question reward
    and the critic's answer probability per question); returns the mean ``eval/reward/...`` metrics. With a ``judge``
    (see ``trainers.plugins``) each video is also judged: its per-question 0/1 scores go into scores.json and the means
    come back as ``eval/oracle/...``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, sums, counts = [], {}, {}
    for index, (prompt, qset) in enumerate(zip(prompts, question_sets)):
        rng = torch.Generator().manual_seed(stream_seed(seed, index))
        cond = generator.encode_prompts([prompt], sampling.guidance_scale)
        with autocast() if autocast is not None else nullcontext():
            rollout = sample(generator, cond, GradWindow.none(sampling.num_steps), rng=rng)
        frames = generator.decode(rollout.latents)  # [1,T,3,H,W] in [0,1]
        picked = frames_from_config(sampling.frames, frames.shape[1], index)
        scored = frames if picked is None else frames[:, picked]
        out = critic.score(scored.float(), [qset])
        rewards = RewardOutput.from_critic(out, [qset])
        total, per_aspect = aggregate(rewards, aspect_weights)
        metrics = reward_metrics(rewards, per_aspect, total, prefix="reward")
        path = write_video(out_dir / video_filename(index, prompt, video_format), frames[0].float().cpu(), fps=fps)
        records.append(
            {
                "video": path.name,
                "prompt": prompt,
                "reward": metrics["reward/total"],
                "aspects": {k.split("/")[-1]: v for k, v in metrics.items() if k.startswith("reward/aspect/")},
                "questions": {k.split("/")[-1]: v for k, v in metrics.items() if k.startswith("reward/q/")},
                "p_expected": out.p_expected_by_id(0),
            }
        )
        if judge is not None:
            verdict = judge(frames[0].float().cpu(), qset.questions)
            judged = judge_metrics(verdict, qset)
            alignment = verdict.get("alignment") or {}
            records[-1]["oracle"] = {
                "total": judged.get("oracle/total"),
                "alignment": alignment.get("mean"),
                "alignment_by_aspect": alignment.get("by_aspect", {}),
                "critic_by_aspect": critic_by_judge_aspect(records[-1]["questions"], alignment.get("aspect_of", {})),
                "scores": verdict["scores"],
            }
            metrics.update(judged)
        for key, value in metrics.items():
            if math.isfinite(value):
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
    (out_dir / "scores.json").write_text(json.dumps(records, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return {f"eval/{key}": sums[key] / counts[key] for key in sums}
