"""The config sections every recipe shares: the trainer settings (``drf:``/``grpo:``/``nft:`` derive from
``TrainerConfig``) and the run around them (``RunConfig``: name, prompts, model, critic, questions, sampling,
logging)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from critics.config import CriticConfig
from critics.reward import CRITIC
from drf.errors import invalid
from drf.geometry import latent_rewards  # noqa: F401  (registers the geometry.* rewards a rewards: list may name)
from drf.grad_window import GradWindowConfig
from drf.logging import LoggingConfig
from drf.models.registry import ModelConfig
from drf.reward_config import RewardConfig, check_reward_list, lists_critic
from drf.runtime import RuntimeConfig
from drf.sampling import SamplingConfig
from prompts.config import QuestionsConfig
from trainers.plugins import JUDGES

LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")


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
    eval_seeds: int = field(
        default=1,
        metadata={"help": "Videos per eval prompt, each from its own noise (changes are averaged per prompt)."},
    )
    eval_batch_size: int = field(
        default=1,
        metadata={"help": "Eval videos sampled and decoded together (faster, more memory); each keeps its own noise."},
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
                    "max_consecutive_skips", "eval_seeds", "eval_batch_size")  # fmt: skip
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
    """The sections every `drf train` config has; a recipe's run config adds its own section (``drf:``, ``grpo:`` or
    ``nft:``)."""

    name: str = field(default="run", metadata={"help": "Run name; the run directory is logging.output_dir/name."})
    seed: int = field(default=0, metadata={"help": "Seed of data order, noise, window and frame draws."})
    prompts: str = field(
        default="configs/prompts/tiny_train.txt",
        metadata={
            "path": "file",
            "help": "Prompt file: .txt (one per line, all train) or .jsonl ({prompt, split: train|eval}).",
        },
    )
    eval_prompts: str = field(
        default="",
        metadata={"path": "file", "help": "Optional extra file of held-out eval prompts (every prompt in it is eval)."},
    )
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The video generator."})
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "The sampling chain."})
    critic: CriticConfig | None = field(
        default=None, metadata={"help": "The frozen VLM critic; needed when rewards lists critic, refused otherwise."}
    )
    rewards: list[RewardConfig] = field(
        default_factory=lambda: [RewardConfig(name=CRITIC)],
        metadata={"help": "What scores a video: a list of {name, weight, ...} entries, read by every recipe "
                  "(built-in ones as drf config reference lists them, or python: package.module:callable)."},
    )  # fmt: skip
    questions: QuestionsConfig = field(
        default_factory=QuestionsConfig, metadata={"help": "How prompts become question sets."}
    )
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "Outputs and logging."})
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig, metadata={"help": "CPU threads."})

    def validate(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise invalid("name", f"must be a plain directory name (got {self.name!r})")
        check_reward_list(self.rewards)
        listed = lists_critic(self.rewards)
        if listed and self.critic is None:
            raise invalid("critic", "is missing: rewards lists critic; add a critic: section (family, path or tiny)")
        if self.critic is not None and not listed:
            raise invalid("critic", "is set but rewards lists no critic; add {name: critic} to rewards or drop it")

    def refuse_grad_window(self, instead: str) -> None:
        """For recipes that do not read ``sampling.grad_window``: a set one is an error saying what they train."""
        if self.sampling.grad_window != GradWindowConfig():
            raise invalid("sampling.grad_window", f"is read by DRF only; {instead}")
