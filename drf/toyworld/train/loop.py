"""What the training scripts share: seeding, thread count, a warm-up + cosine learning rate, a wall-clock cap and a
resumable training state.

The cap exists because the scripts run on shared CPUs: a run stops cleanly after ``minutes`` and records the steps it
actually made, instead of being killed with nothing saved. The training state (weights, optimiser, data and noise
generators, step, loss curve, time spent) is written every few minutes, so a run that is killed resumes where it
left off when the same command is run again.
"""

from __future__ import annotations

import math
import os
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """Wall time since start (plus ``offset``, the time of the runs this one resumes) and whether the ``minutes`` cap
    (0: none) has passed."""

    minutes: float = 0.0
    start: float = field(default_factory=time.perf_counter)
    offset: float = 0.0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start + self.offset

    def progress(self, step: int, steps: int) -> float:
        """Share of the run done: by steps, or by wall time when the cap comes first (so the schedule still decays)."""
        by_steps = step / max(1, steps)
        return max(by_steps, self.elapsed / (60 * self.minutes)) if self.minutes > 0 else by_steps

    def expired(self) -> bool:
        return self.minutes > 0 and self.elapsed > 60 * self.minutes


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used so far, over all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class TrainState:
    """The resumable part of a training run, saved to ``path`` every ``every_minutes`` (atomic replace).

    ``modules`` and ``optimizer`` are saved through their state dicts; ``generator`` is the data/noise generator;
    ``curve`` holds [step, loss, seconds] rows and ``probes`` one dict per probe; ``cpu_offset`` and ``clock.offset``
    carry the CPU and wall time of earlier runs, so a resumed run reports the totals.
    """

    path: Path
    modules: dict[str, Any]
    optimizer: Any
    generator: Any
    clock: Clock
    every_minutes: float = 3.0
    step: int = 0
    curve: list[list[float]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    cpu_offset: float = 0.0
    _last_save: float = field(default_factory=time.perf_counter)

    def restore(self) -> bool:
        """Load the saved state if there is one; True when the run resumes."""
        if not self.path.is_file():
            return False
        state = torch.load(self.path, weights_only=False)
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        random.setstate(state["random"])
        torch.set_rng_state(state["torch"])
        self.step, self.curve, self.probes = state["step"], state["curve"], state.get("probes", [])
        self.clock.offset, self.cpu_offset = state["seconds"], state["cpu_seconds"] - cpu_seconds()
        log(f"resumed {self.path} at step {self.step} ({self.clock.elapsed:.0f}s trained)")
        return True

    def cpu_total(self) -> float:
        return cpu_seconds() + self.cpu_offset

    def probe_due(self, every_minutes: float) -> bool:
        """Whether ``every_minutes`` of CPU time have passed since the last probe (true before the first)."""
        last = self.probes[-1]["cpu_minutes"] if self.probes else -every_minutes
        return self.cpu_total() / 60 - last >= every_minutes

    def save_if_due(self, force: bool = False) -> None:
        if not force and time.perf_counter() - self._last_save < 60 * self.every_minutes:
            return
        state = {
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "random": random.getstate(),
            "torch": torch.get_rng_state(),
            "step": self.step,
            "curve": self.curve,
            "probes": self.probes,
            "seconds": self.clock.elapsed,
            "cpu_seconds": self.cpu_total(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)
        self._last_save = time.perf_counter()

    def finish(self) -> None:
        """Remove the saved state once the model itself is written (a rerun then trains afresh)."""
        self.path.unlink(missing_ok=True)
