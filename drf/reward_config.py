"""The run's ``rewards:`` list: which rewards score a video, with what weight, and how to load a user's own.

Every recipe reads the same list. DRF maximises the weighted sum of the (differentiable) rewards; GRPO and
DiffusionNFT turn each named reward into a group-relative advantage and weight those. Built-in rewards are those in
``drf.rewards.REWARDS``, registered beside their code: ``critic`` (``critics.reward``: the VLM critic's aggregated
answer log-probabilities, per-aspect weights in ``questions.aspect_weights``) and ``geometry.smoothness |
reprojection | trajectory | dynamic_degree`` (``drf.geometry.latent_rewards``: read from the final latents by a latent
geometry model); ``drf config reference`` lists them. A user's scorer is ``python: package.module:callable`` with
``fn(inputs, prompts, **context) -> [B]``::

    rewards:
      - {name: critic, weight: 1.0}
      - {name: geometry.trajectory, weight: 0.5, model: toyworld, geometry: {trajectory_rotation_scale_deg: 10}}
      - {name: brightness, weight: 0.1, python: my_rewards:brightness, reads: frames, differentiable: true}
"""

from __future__ import annotations

import difflib
import importlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from drf.errors import ConfigError, invalid
from drf.geometry.rewards import GeometryRewardConfig
from drf.rewards import REWARDS, NamedReward

_CALLABLE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@dataclass
class RewardConfig:
    """One entry of ``rewards:``."""

    name: str = field(
        metadata={"help": "Reward name: a built-in reward (critic, geometry.*; drf config reference lists them), or "
                  "any name for a python reward (logged as reward/<name>)."}
    )  # fmt: skip
    weight: float = field(
        default=1.0, metadata={"help": "Weight in the sum of rewards (DRF) or of advantages (GRPO, NFT); 0 logs only."}
    )
    python: str = field(
        default="",
        metadata={"help": "package.module:callable of your own reward: fn(inputs, prompts, **context) -> [B] "
                  "tensor; context holds question_sets and seeds (each video's noise seed)."},
    )  # fmt: skip
    reads: Literal["frames", "latents"] | None = field(
        default=None,
        metadata={"help": "python rewards: what inputs is, the decoded frames [B,T,3,H,W] in [0,1] (default) or "
                  "the final latents (then nothing is decoded for it). Built-in rewards know their own."},
    )  # fmt: skip
    differentiable: bool | None = field(
        default=None,
        metadata={"help": "python rewards: gradients of the output reach inputs (default false; DRF needs true). "
                  "Built-in rewards know their own."},
    )  # fmt: skip
    model: str = field(
        default="",
        metadata={"path": "model", "help": "geometry.* rewards: the latent geometry model, 'toyworld' (shipped), "
                  "a directory written by LatentGeometryModel.save_pretrained, or a hub id."},
    )  # fmt: skip

    geometry: GeometryRewardConfig = field(
        default_factory=GeometryRewardConfig,
        metadata={"help": "geometry.* rewards: their calibrated knobs (docs/geometry.md), e.g. "
                  "{name: geometry.reprojection, model: toyworld, geometry: {reproj_tau: 0.1}}."},
    )  # fmt: skip

    @property
    def reads_what(self) -> str:
        return REWARDS[self.name].reads if not self.python else (self.reads or "frames")

    @property
    def is_differentiable(self) -> bool:
        return REWARDS[self.name].differentiable if not self.python else bool(self.differentiable)

    @property
    def needs_critic(self) -> bool:
        """Whether this entry scores with the run's critic (its ``critic:`` section)."""
        return not self.python and REWARDS[self.name].needs_critic

    def validate(self) -> None:
        if not math.isfinite(self.weight) or self.weight < 0:
            raise invalid("weight", f"must be finite and >= 0 (got {self.weight})")
        if self.python:
            if self.name in REWARDS:
                raise invalid("name", f"{self.name!r} is a built-in reward; give your python reward its own name")
            if not self.name or "/" in self.name:
                raise invalid("name", f"must be a non-empty name without '/' (got {self.name!r})")
            if not _CALLABLE.fullmatch(self.python):
                raise invalid("python", f"is {self.python!r}; write package.module:callable")
            self.refuse_geometry_knobs()
            return
        if self.name not in REWARDS:
            close = difflib.get_close_matches(self.name, list(REWARDS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise invalid("name", f"{self.name!r} is not a built-in reward ({', '.join(REWARDS)}); {hint}for your "
                          "own scorer add python: package.module:callable")  # fmt: skip
        reads, differentiable = REWARDS[self.name].reads, REWARDS[self.name].differentiable
        if self.reads not in (None, reads):
            raise invalid("reads", f"{self.name} reads {reads}; leave reads out for built-in rewards")
        if self.differentiable not in (None, differentiable):
            raise invalid("differentiable", f"{self.name} is {'' if differentiable else 'not '}differentiable; "
                          "leave it out for built-in rewards")  # fmt: skip
        needs_model = REWARDS[self.name].model
        if needs_model and not self.model:
            raise invalid("model", f"{self.name} needs {needs_model}")
        if not needs_model:
            self.refuse_geometry_knobs()

    def refuse_geometry_knobs(self) -> None:
        """``model`` and ``geometry`` set on a reward that does not read them: a misplaced line, said at once."""
        if self.model:
            raise invalid("model", "is read by geometry.* rewards only")
        if self.geometry != GeometryRewardConfig():
            raise invalid("geometry", "is read by geometry.* rewards only")


def lists_critic(rewards: list[RewardConfig]) -> bool:
    """Whether the list scores with the critic (a reward that needs the run's ``critic:`` section)."""
    return any(r.needs_critic for r in rewards)


def check_reward_list(rewards: list[RewardConfig]) -> None:
    """Names are unique and some weight is positive (ConfigError naming ``rewards``)."""
    if not rewards:
        raise invalid("rewards", "is empty; list at least one, e.g. [{name: critic}]")
    names = [r.name for r in rewards]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise invalid("rewards", f"names {twice!r} twice; names must be unique")
    if not any(r.weight > 0 for r in rewards):
        raise invalid("rewards", "needs at least one weight > 0")


def load_callable(spec: str, where: str) -> Callable[..., Any]:
    """The object ``package.module:attribute`` names, or a one-line ConfigError saying what is wrong at ``where``."""
    module_name, _, attribute = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:  # a user's module: any failure on import is theirs to see in one line
        raise ConfigError(f"{where}: cannot import {module_name!r} ({type(err).__name__}: {err})") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}: module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{where}: {spec} is a {type(obj).__name__}, not a callable")
    return obj


def python_reward(cfg: RewardConfig, where: str) -> NamedReward:
    """A ``python:`` entry as a ``Reward``."""
    return NamedReward(
        cfg.name, load_callable(cfg.python, where), reads=cfg.reads_what, differentiable=cfg.is_differentiable
    )
