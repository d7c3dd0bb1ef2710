"""What to change when a step does not fit: the run's own knobs, cheapest first, each planned again.

"Cheapest" is what a change costs the run, not the plan: recomputation (decode checkpointing, bf16 decode) before
quantisation (a 4-bit critic, 8-bit AdamW), before a smaller problem (a shorter window, fewer frames, a smaller size),
before more hardware (FSDP2 over more processes). Every candidate is a ``--set`` override planned by running the step
again, except more processes, which divide the same plan (``drf.plan.step.sharded``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from drf.plan.step import StepPlan, recipe_of, sharded
from drf.reward_config import lists_critic


@dataclass(frozen=True)
class Change:
    """One way to spend less memory: what it is and the ``--set`` overrides (or the process count) that make it."""

    what: str
    overrides: tuple[str, ...] = ()
    processes: int = 0  # > 0: run under FSDP2 on this many processes instead


def _frames_below(n: int) -> int:
    """About half the frames, still 4k+1."""
    return max(1, (n - 1) // 8 * 4 + 1)


def _size_below(n: int) -> int:
    return max(16, int(n * 0.75) // 16 * 16)


def candidates(cfg: Any, processes: int, fsdp: bool) -> Iterator[Change]:
    """The changes that apply to ``cfg``, cheapest first."""
    section = recipe_of(cfg)
    train, model = getattr(cfg, section), cfg.model
    if model.decode_checkpointing != "segments":
        after = "frames" if model.decode_checkpointing == "none" else "segments"
        yield Change(f"decode checkpointing {after}", (f"model.decode_checkpointing={after}",))
    if section == "drf" and train.mixed_precision == "bf16" and not train.autocast_decode:
        yield Change("decode in bf16", ("drf.autocast_decode=true",))
    if not train.gradient_checkpointing:
        yield Change("gradient checkpointing", (f"{section}.gradient_checkpointing=true",))
    if lists_critic(cfg.rewards) and cfg.critic.quantization != "4bit":
        yield Change("4-bit critic", ("critic.quantization=4bit",))
    if train.optimizer == "adamw" and not fsdp:
        yield Change("8-bit AdamW", (f"{section}.optimizer=adamw8bit",))
    window = cfg.sampling.grad_window
    if section == "drf" and window.kind != "steps" and window.k > 1:
        yield Change(f"window K={window.k - 1}", (f"sampling.grad_window.k={window.k - 1}",))
    if model.num_frames > 1:
        frames = _frames_below(model.num_frames)
        yield Change(f"{frames} frames", (f"model.num_frames={frames}",))
    height, width = _size_below(model.height), _size_below(model.width)
    if (height, width) != (model.height, model.width):
        yield Change(f"{height}x{width}", (f"model.height={height}", f"model.width={width}"))
    if train.optimizer == "adamw":
        for more in (2, 4, 8):
            if more > processes:
                yield Change(f"FSDP2 on {more} processes", processes=more)


@dataclass
class Suggestion:
    change: Change
    plan: StepPlan


def suggest(
    cfg: Any,
    base: StepPlan,
    budget: int,
    replan: Callable[[tuple[str, ...]], StepPlan],
    processes: int = 1,
    fsdp: bool = False,
    wanted: int = 3,
) -> Iterator[Suggestion]:
    """Plan each candidate change and yield it (fitting or not) until ``wanted`` of them fit in ``budget`` bytes.

    ``base``: the step's plan on one process; ``replan(overrides)``: the plan of the config with more ``--set``
    overrides (again on one process); either is divided over the processes when the run is sharded."""
    fitting = 0
    for change in candidates(cfg, processes, fsdp):
        if change.processes:
            new = sharded(base, change.processes)
        else:
            new = replan(change.overrides)
            new = sharded(new, processes) if fsdp and processes > 1 else new
        yield Suggestion(change, new)
        fitting += new.peak.bytes <= budget
        if fitting >= wanted:
            return
