"""Processes and precision: the ``Accelerator``, one all-reduce of the gradients per optimiser step, clipping.

Multi-process training (``accelerate launch``) averages gradients with one all-reduce per optimiser step instead of
wrapping the denoiser in ``DistributedDataParallel``: the generator keeps calling its own modules, the sampling
chain's per-step checkpointing stays untouched, and the same reduction carries the non-finite flag to every process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


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


def gather_rows(tensor: torch.Tensor, accelerator: Any) -> torch.Tensor:
    """``tensor`` [N,...] of every process concatenated in rank order (the tensor itself with one process); every
    process must pass the same shape. Statistics over the whole batch (GRPO's global and max-group std) need it."""
    if accelerator is None or accelerator.num_processes == 1:
        return tensor
    return accelerator.gather(tensor.to(accelerator.device)).to(tensor.device)


def clip_gradients(params: Sequence[nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm to ``max_norm`` (0 = no clipping) and return the norm before clipping."""
    limit = max_norm if max_norm > 0 else math.inf
    return float(torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], limit))
