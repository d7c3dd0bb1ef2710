"""Which sampling steps carry gradient.

Backpropagating through a whole sampling chain costs memory linear in the number of steps and tends to explode;
differentiating only a window of steps (DRaFT's last-K, or K random steps) keeps the cost of one or a few steps. The
one-step x0 window goes further: it stops the chain at one random step and scores the clean latent the model predicts
there (the shortcut of Dual-Process and PRFL), which is cheaper than finishing the chain and reaches the early steps
where layout is decided. A ``GradWindow`` is the decision, made once per rollout, plus how the steps inside it are
computed.
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
    ``predict_x0``: the chain stops at the window's single step and returns the clean latent predicted there,
    x0 = x_t - sigma_t * v (flow matching: x_t = (1 - sigma) x0 + sigma * noise and v = noise - x0).
    """

    steps: frozenset[int]
    num_steps: int
    checkpointing: bool = True
    detach_input: bool = False
    predict_x0: bool = False

    def __post_init__(self) -> None:
        bad = sorted(i for i in self.steps if not 0 <= i < self.num_steps)
        if bad:
            raise ConfigError(f"gradient window step {bad[0]} is outside 0..{self.num_steps - 1}")
        if self.predict_x0 and len(self.steps) != 1:
            raise ConfigError(f"an x0 window has exactly one step (got {sorted(self.steps)})")

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
        return cls(frozenset(_normalised(steps, num_steps)), num_steps, **options)

    @classmethod
    def x0(cls, num_steps: int, seed: int, among: Sequence[int] | None = None, **options: Any) -> GradWindow:
        """One step drawn from ``among`` (default: every step) like ``random_k`` with k = 1; the chain stops there and
        returns the predicted clean latent."""
        return cls.random_k(1, num_steps, seed, among=among, predict_x0=True, **options)


def _normalised(steps: Iterable[int], num_steps: int) -> list[int]:
    """Step indices with negative ones counted from the end (-1 = the last step)."""
    return [i + num_steps if i < 0 else i for i in steps]


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
    """Build the window for one rollout from a ``GradWindowConfig``; random-K and x0 reseed per rollout (one draw for
    the rollout's whole micro-batch), reproducibly, and draw from ``among`` when given (see ``GradWindow.random_k``)."""
    options = {"checkpointing": cfg.checkpointing, "detach_input": cfg.detach_input}
    seed = cfg.seed * 1_000_003 + rollout_index
    if cfg.kind == "last_k":
        return GradWindow.last_k(cfg.k, num_steps, **options)
    if cfg.kind == "random_k":
        return GradWindow.random_k(cfg.k, num_steps, seed=seed, among=among, **options)
    if cfg.kind == "steps":
        return GradWindow.explicit(cfg.steps, num_steps, **options)
    if cfg.kind == "x0":
        return GradWindow.x0(num_steps, seed, among=x0_pool(cfg, num_steps, among), **options)
    raise ConfigError(f"sampling.grad_window.kind {cfg.kind!r} is not one of {', '.join(WINDOW_KINDS)}")


def x0_pool(cfg: Any, num_steps: int, among: Sequence[int] | None = None) -> list[int]:
    """The steps an x0 window draws from: ``cfg.steps`` when listed, else every step, kept inside ``among`` (the
    trained expert's steps) when given."""
    pool = sorted(set(_normalised(cfg.steps, num_steps))) if cfg.steps else list(range(num_steps))
    if among is not None:
        pool = [i for i in pool if i in set(among)]
    if not pool:
        raise ConfigError(f"sampling.grad_window.steps {cfg.steps} holds none of the steps the trained expert runs "
                          f"({sorted(among or [])}); list some of those, or set model.train_experts: both")  # fmt: skip
    return pool


WINDOW_KINDS = ("last_k", "random_k", "steps", "x0")


@dataclass
class GradWindowConfig:
    """Which sampling steps carry gradient, and how they are computed."""

    kind: Literal["last_k", "random_k", "steps", "x0"] = field(
        default="last_k",
        metadata={"help": "last_k: the final k steps; random_k: k random steps; steps: a list; x0: stop at one random "
                  "step and score the clean latent predicted there (x0 = x_t - sigma_t * v)."},
    )  # fmt: skip
    k: int = field(default=1, metadata={"help": "Number of steps with gradient (last_k, random_k)."})
    steps: list[int] = field(
        default_factory=list,
        metadata={"help": "Step indices with gradient, 0 = noisiest (kind: steps); for x0 the "
                  "steps its one step is drawn from (default: all)."},
    )  # fmt: skip
    seed: int = field(default=0, metadata={"help": "Seed of the random_k and x0 draws (one per micro-batch)."})
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
        if self.kind == "x0" and self.k != 1:
            raise invalid("k", f"is not read by kind x0, which trains exactly one step (got {self.k}); leave it out")
        if len(set(self.steps)) != len(self.steps):
            raise invalid("steps", f"has repeated indices ({self.steps}); list each step once")
