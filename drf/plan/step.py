"""Plan one optimiser step of a run config: build the recipe's trainer around fake models and run its own
``train_step`` under ``StepTracker``.

The trainer is the one ``drf train`` builds (``trainers.recipes``), constructed inside a ``FakeTensorMode`` so that
its LoRA, optimiser and EMA are fake too, in a throw-away run directory. The step runs outside the mode: tensors made
from fake weights stay fake, while the small tensors the step makes itself (noise, token ids, timesteps, grid sizes)
are real, so the Python-side decisions that read them (which expert, which frames, the critic's positions) are taken
exactly as in training.

What the fake run cannot see is planned from its parts, and said so in ``StepPlan.notes``:
- a 4-bit or 8-bit critic runs as its bf16 fake, with its linear weights counted at their quantised size and one
  transient bf16 copy of each weight per call (what bitsandbytes dequantises);
- under FSDP2 with N processes the trained module's weights, gradients, optimiser state and EMA are divided by N and
  two of its blocks are added back whole (the block being computed and the one prefetched).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from drf.plan.models import QUANTIZED_SCALE, fake_critic, fake_generator, prompt_words, quantized_linears
from drf.plan.tracker import ACTIVATIONS, GRADIENTS, OPTIMIZER, PhasePeak, StepTracker
from drf.reward_config import lists_critic
from trainers.plugins import resolve
from trainers.recipes import RECIPES

TRAINABLE = "trainable weights"
EMA = "EMA"


def weights_kind(name: str) -> str:
    return f"weights: {name}"


@dataclass
class StepPlan:
    """Peak memory of one optimiser step on one process, by kind and by phase, in bytes."""

    recipe: str
    peak: PhasePeak
    phases: dict[str, PhasePeak]
    static: dict[str, int]  # what exists before the step, by kind
    seconds: float
    notes: list[str] = field(default_factory=list)
    sharded_kinds: frozenset[str] = frozenset()  # what FSDP2 would divide by the process count
    block_bytes: int = 0  # the trained module's largest block, gathered whole under FSDP2

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda name: self.phases[name].bytes)


def recipe_of(cfg: Any) -> str:
    names = {f.name for f in dataclasses.fields(cfg)}
    return next(name for name in RECIPES if name in names)


def _throwaway(cfg: Any, directory: str) -> Any:
    """The config writing its run directory under ``directory``, with no trackers or report, and at most two
    micro-batches per step: the third and later repeat the second's memory (same shapes, gradients already held)."""
    logging = dataclasses.replace(cfg.logging, output_dir=directory, trackers=[], report=False)
    section = recipe_of(cfg)
    train = getattr(cfg, section)
    train = dataclasses.replace(train, gradient_accumulation=min(train.gradient_accumulation, 2))
    return dataclasses.replace(cfg, logging=logging, **{section: train})


class _PhaseTimer:
    """Stands in for the trainer's ``Timer``: each phase it names becomes a tracker phase."""

    def __init__(self, tracker: StepTracker) -> None:
        self.tracker = tracker

    def __call__(self, phase: str) -> Any:
        return self.tracker.phase(phase)

    def metrics(self) -> dict[str, float]:
        return {}


def _dequantised_on_call(linears: list[nn.Linear]) -> None:
    """Each call of a quantised linear first makes a bf16 copy of its weight, as bitsandbytes dequantises it."""

    def copy_weight(module: nn.Module, args: Any) -> None:
        with torch.no_grad():
            module.weight.clone()

    for linear in linears:
        linear.register_forward_pre_hook(copy_weight)


def build_trainer(cfg: Any, mode: FakeTensorMode, run_root: str) -> Any:
    """The recipe's trainer for ``cfg`` around fake models. What the trainer adds (a LoRA, EMA copies of it) is
    real and small; whatever it computes from the fake weights (gradients, optimiser state of full fine-tuning) is
    fake."""
    recipe = recipe_of(cfg)
    generator = fake_generator(cfg.model, mode)
    critic = fake_critic(cfg.critic, mode, prompt_words(cfg.prompts)) if lists_critic(cfg.rewards) else None
    trainer_class = resolve(RECIPES[recipe].trainer)
    return trainer_class(_throwaway(cfg, run_root), generator=generator, critic=critic)


def _register(tracker: StepTracker, trainer: Any, quantization: str) -> None:
    """Count what exists before the step: trainable weights, EMA, then each frozen model."""
    tracker.track(trainer.params, TRAINABLE)
    if trainer.ema is not None:
        tracker.track(trainer.ema.shadow_params, EMA)
    pipe = trainer.generator.pipe
    for name in ("transformer", "transformer_2"):
        if getattr(pipe, name, None) is not None:
            tracker.add_static(getattr(pipe, name), weights_kind(name))
    tracker.add_static(pipe.text_encoder, weights_kind("text encoder"))
    tracker.add_static(pipe.vae, weights_kind("VAE"))
    if trainer.critic is not None:
        model = trainer.critic.model
        if quantization != "none":
            linears = quantized_linears(model)
            tracker.track([m.weight for m in linears], weights_kind("critic"), QUANTIZED_SCALE[quantization])
            _dequantised_on_call(linears)
        tracker.add_static(model, weights_kind("critic"))


def plan_step(
    cfg: Any, processes: int = 1, fsdp: bool = False, kernel_scratch: Callable[[Any, tuple, Any], int] | None = None
) -> StepPlan:
    """Plan one optimiser step of ``cfg`` (a validated run config) on one of ``processes`` processes;
    ``kernel_scratch``: the memory kernels hold inside an operator on the device planned for (``StepTracker``)."""
    started = time.perf_counter()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    notes = []
    with tempfile.TemporaryDirectory(prefix="drf-plan-") as tmp:
        trainer = build_trainer(cfg, mode, tmp)
        tracker = StepTracker(kernel_scratch)
        _register(tracker, trainer, cfg.critic.quantization if trainer.critic is not None else "none")
        static = dict(tracker.by_kind)
        tracker.watch_gradients(trainer.params)
        tracker.watch_optimizers()
        pipe = trainer.generator.pipe
        tracker.replay_gradient_free_calls(
            [m for m in (pipe.transformer, pipe.transformer_2, pipe.text_encoder) if m is not None]
        )
        trainer.start_step = lambda: _PhaseTimer(tracker)
        try:
            with tracker:
                trainer.train_step(0)
        finally:
            tracker.close()
    if trainer.critic is not None and cfg.critic.quantization != "none":
        notes.append(f"critic {cfg.critic.quantization}: run as bf16, its linear weights counted at their quantised "
                     "size plus one dequantised copy per call")  # fmt: skip
    plan = StepPlan(
        recipe_of(cfg),
        tracker.peak,
        tracker.phases,
        static,
        time.perf_counter() - started,
        notes,
        frozenset({TRAINABLE, GRADIENTS, OPTIMIZER, EMA} | {weights_kind(n) for n in trainer.experts}),
        _block_bytes(trainer.transformer),
    )
    return sharded(plan, processes) if fsdp and processes > 1 else plan


def _block_bytes(module: nn.Module) -> int:
    """Bytes of the largest of the module's repeated blocks (the unit FSDP2 gathers whole)."""
    blocks = [b for m in module.modules() if isinstance(m, nn.ModuleList) for b in m]
    sizes = [sum(p.numel() * p.element_size() for p in b.parameters()) for b in blocks]
    return max(sizes, default=0)


def sharded(plan: StepPlan, processes: int) -> StepPlan:
    """The plan under FSDP2 on ``processes`` processes: what FSDP shards (the trained module's weights, their
    gradients, optimiser state and EMA) divided by the process count, plus two whole blocks gathered at a time."""
    divided, gathered = plan.sharded_kinds, 2 * plan.block_bytes

    def shard(peak: PhasePeak) -> PhasePeak:
        kinds = {k: (v // processes if k in divided else v) for k, v in peak.by_kind.items()}
        kinds[ACTIVATIONS] = kinds.get(ACTIVATIONS, 0) + gathered
        return PhasePeak(sum(kinds.values()), kinds)

    phases = {name: shard(p) for name, p in plan.phases.items()}
    peak = max(phases.values(), key=lambda p: p.bytes)
    static = {k: (v // processes if k in divided else v) for k, v in plan.static.items()}
    note = (f"FSDP2 on {processes} processes: {', '.join(sorted(divided))} divided by {processes}, "
            f"plus two gathered blocks ({gathered / 2**30:.2f} GiB)")  # fmt: skip
    return dataclasses.replace(plan, peak=peak, phases=phases, static=static, notes=[*plan.notes, note])
