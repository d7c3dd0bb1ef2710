"""Which sampling steps carry gradient.

Backpropagating through a whole sampling chain costs memory linear in the number of steps and tends to explode;
differentiating only a window of steps (DRaFT's last-K, or K random steps) keeps the cost of one or a few steps. A
``GradWindow`` is the decision, made once per rollout, plus how the steps inside it are computed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from drf.errors import ConfigError, invalid


@dataclass(frozen=True)
class GradWindow:
    """Step indices (0 = first, noisiest step) that run with gradient.

    ``checkpointing`` recomputes each windowed step's activations during backward, so memory stays near that of one
    step whatever the window size. ``detach_input`` feeds the transformer a detached latent inside the window:
    gradients reach the weights through each step's velocity but not through the model's Jacobian with respect to
    its input, which makes backward cheaper and is the usual variance-reduction choice for long windows.
    """

    steps: frozenset[int]
    num_steps: int
    checkpointing: bool = True
    detach_input: bool = False

    def __post_init__(self) -> None:
        bad = sorted(i for i in self.steps if not 0 <= i < self.num_steps)
        if bad:
            raise ConfigError(f"gradient window step {bad[0]} is outside 0..{self.num_steps - 1}")

    def __contains__(self, step: int) -> bool:
        return step in self.steps

    @property
    def first(self) -> int | None:
        return min(self.steps) if self.steps else None

    @classmethod
    def none(cls, num_steps: int) -> GradWindow:
        return cls(frozenset(), num_steps)

    @classmethod
    def last_k(cls, k: int, num_steps: int, **options: Any) -> GradWindow:
        _check_k(k, num_steps)
        return cls(frozenset(range(num_steps - k, num_steps)), num_steps, **options)

    @classmethod
    def random_k(
        cls, k: int, num_steps: int, seed: int, among: Sequence[int] | None = None, **options: Any
    ) -> GradWindow:
        """``k`` steps drawn from ``among`` (default: every step; a two-expert model training one expert passes
        that expert's steps, so every window has something to train)."""
        pool = range(num_steps) if among is None else sorted(among)
        _check_k(k, len(pool))
        return cls(frozenset(random.Random(seed).sample(pool, k)), num_steps, **options)

    @classmethod
    def explicit(cls, steps: Iterable[int], num_steps: int, **options: Any) -> GradWindow:
        normalised = frozenset(i + num_steps if i < 0 else i for i in steps)
        return cls(normalised, num_steps, **options)


MIX_SCHEDULES = ("fixed", "progressive", "random")


def mix_window(
    schedule: str,
    size: int,
    num_steps: int,
    iteration: int,
    *,
    start: int = 0,
    shift_every: int = 1,
    seed: int = 0,
    reach_end: bool = True,
    within: range | None = None,
) -> GradWindow:
    """MixGRPO's window of SDE (and trained) steps for one iteration; the other steps run as a plain ODE.

    ``fixed`` keeps ``[start, start+size)``; ``progressive`` slides the window one step towards the clean end every
    ``shift_every`` iterations (noisy steps shape layout, late ones detail) and stays at the end; ``random`` draws the
    start per iteration from ``seed``. Without ``reach_end`` the last step (into sigma = 0) stays outside the window.
    ``within``: the steps the window must stay inside (a two-expert model training one expert passes that expert's
    steps; a start before them moves up to their first).
    """
    usable = range(num_steps if reach_end else num_steps - 1)
    if within is not None:
        usable = range(max(usable.start, within.start), min(usable.stop, within.stop))
    _check_k(size, len(usable))
    lowest, last_start = usable.start, usable.stop - size
    if schedule == "fixed":
        first = min(max(start, lowest), last_start)
    elif schedule == "progressive":
        first = min(max(start, lowest) + iteration // max(shift_every, 1), last_start)
    elif schedule == "random":
        first = random.Random(seed * 1_000_003 + iteration).randint(lowest, last_start)
    else:
        raise ConfigError(f"unknown window schedule {schedule!r}; choose one of {', '.join(MIX_SCHEDULES)}")
    return GradWindow(frozenset(range(first, first + size)), num_steps)


def _check_k(k: int, num_steps: int) -> None:
    if not 1 <= k <= num_steps:
        raise ConfigError(f"gradient window k={k} must be between 1 and num_steps={num_steps}")


def window_from_config(
    cfg: Any, num_steps: int, rollout_index: int = 0, among: Sequence[int] | None = None
) -> GradWindow:
    """Build the window for one rollout from a ``GradWindowConfig``; random-K reseeds per rollout, reproducibly, and
    draws from ``among`` when given (see ``GradWindow.random_k``)."""
    options = {"checkpointing": cfg.checkpointing, "detach_input": cfg.detach_input}
    if cfg.kind == "last_k":
        return GradWindow.last_k(cfg.k, num_steps, **options)
    if cfg.kind == "random_k":
        seed = cfg.seed * 1_000_003 + rollout_index
        return GradWindow.random_k(cfg.k, num_steps, seed=seed, among=among, **options)
    if cfg.kind == "steps":
        return GradWindow.explicit(cfg.steps, num_steps, **options)
    raise ConfigError(f"sampling.grad_window.kind {cfg.kind!r} is not one of last_k, random_k, steps")


@dataclass
class GradWindowConfig:
    """Which sampling steps carry gradient, and how they are computed."""

    kind: Literal["last_k", "random_k", "steps"] = field(
        default="last_k", metadata={"help": "last_k: the final k steps; random_k: k random steps; steps: a list."}
    )
    k: int = field(default=1, metadata={"help": "Number of steps with gradient (last_k, random_k)."})
    steps: list[int] = field(
        default_factory=list, metadata={"help": "Step indices with gradient, 0 = noisiest (kind: steps)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the random_k draw."})
    checkpointing: bool = field(
        default=True, metadata={"help": "Recompute windowed steps in backward so memory stays near one step."}
    )
    detach_input: bool = field(
        default=False, metadata={"help": "Detach the latent entering each windowed step (cheaper backward)."}
    )

    def validate(self) -> None:
        if self.k < 1:
            raise invalid("k", f"must be >= 1 (got {self.k})")
        if self.kind == "steps" and not self.steps:
            raise invalid("steps", "must list at least one step index when kind is steps, e.g. [18, 19]")
        if len(set(self.steps)) != len(self.steps):
            raise invalid("steps", f"has repeated indices ({self.steps}); list each step once")
