"""Optimiser (AdamW, 8-bit AdamW), learning-rate schedule (diffusers) and EMA of the trainable weights."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from drf.errors import ConfigError
from trainers.config import TrainerConfig


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
