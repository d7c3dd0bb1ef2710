"""What the three training scripts share: seeding, thread count, a warm-up + cosine learning rate and a wall-clock cap.

The cap exists because the scripts run on shared CPUs: a run stops cleanly after ``minutes`` and records the steps it
actually made, instead of being killed with nothing saved.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import torch


def setup(seed: int, device: torch.device, threads: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cpu" and threads > 0:
        torch.set_num_threads(threads)


def lr_at(step: int, progress: float, peak: float, warmup: int = 50, floor: float = 0.1) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to ``floor * peak`` as ``progress`` -> 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, max(0.0, progress))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass
class Clock:
    """Wall time since start and whether the ``minutes`` cap (0: none) has passed."""

    minutes: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def progress(self, step: int, steps: int) -> float:
        """Share of the run done: by steps, or by wall time when the cap comes first (so the schedule still decays)."""
        by_steps = step / max(1, steps)
        return max(by_steps, self.elapsed / (60 * self.minutes)) if self.minutes > 0 else by_steps

    def expired(self) -> bool:
        return self.minutes > 0 and self.elapsed > 60 * self.minutes


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
