"""Geometry rewards as ``Reward``s that read the chain's final latents through a latent geometry model — no decode.

Each is one score per video: ``smoothness``, ``reprojection``, ``trajectory`` (against the camera move the prompt
names; 0 for a prompt that names none, alike for a whole group, so it adds no advantage and no gradient) and
``dynamic_degree`` (how much the camera moves: pairs with smoothness, which a frozen camera wins). The model runs
once per batch however many of them a run lists: they share the ``memo`` a trainer passes to one scoring call.
Gradients reach the latents (the model's own weights are frozen), so DRF can train on them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from drf.geometry.lgm import LatentGeometryModel
from drf.geometry.output import GeometryOutput
from drf.geometry.rewards import GeometryRewardConfig, dynamic_degree, reprojection, smoothness, trajectory_score
from drf.rewards import BuildContext, BuiltInReward, NamedReward, register_reward

KINDS = ("smoothness", "reprojection", "trajectory", "dynamic_degree")


def geometry_reward(
    kind: str,
    model: LatentGeometryModel,
    camera_of: Callable[[str], str | None],
    config: GeometryRewardConfig | None = None,
) -> NamedReward:
    """The ``geometry.<kind>`` reward of ``model``; ``camera_of(prompt)`` names the camera move a prompt asks for."""
    if kind not in KINDS:
        raise ValueError(f"unknown geometry reward {kind!r}; known: {', '.join(KINDS)}")
    cfg = config or GeometryRewardConfig()

    def score(latents: Tensor, prompts: Sequence[str], memo: dict | None = None, **context: Any) -> Tensor:
        geom = read_geometry(model, latents, {} if memo is None else memo)
        if kind == "smoothness":
            return smoothness(geom, cfg)
        if kind == "reprojection":
            return reprojection(geom, cfg)
        if kind == "dynamic_degree":
            return dynamic_degree(geom, cfg)
        return trajectory_score(geom, [camera_of(p) for p in prompts], cfg)

    return NamedReward(f"geometry.{kind}", score, reads="latents", differentiable=True)


def read_geometry(model: LatentGeometryModel, latents: Tensor, memo: dict) -> GeometryOutput:
    """``model(latents)``, computed once per scoring call (``memo`` is that call's)."""
    key = ("geometry", id(model))
    if key not in memo:
        memo[key] = model(latents.float())
    return memo[key]


def load_geometry_model(
    name: str, device: str | torch.device, key: str = "latent geometry model"
) -> LatentGeometryModel:
    """A frozen latent geometry model: a shipped one by name ("toyworld"), a ``save_pretrained`` directory or a hub
    id (``key``: the config key that named it, for errors)."""
    return LatentGeometryModel.from_pretrained(name, device=device, key=key).requires_grad_(False)


def _builder(kind: str) -> Callable[[Any, BuildContext, str], NamedReward]:
    def build(entry: Any, context: BuildContext, where: str) -> NamedReward:
        key = ("geometry model", entry.model)
        if key not in context.cache:
            context.cache[key] = load_geometry_model(entry.model, context.device, f"{where}.model")
        return geometry_reward(kind, context.cache[key], context.camera_of, entry.geometry)

    return build


for _kind in KINDS:
    register_reward(
        f"geometry.{_kind}",
        BuiltInReward("latents", True, _builder(_kind), model="a latent geometry model: 'toyworld' or a directory",
                      help="read from the final latents by a latent geometry model (model: toyworld, a directory or "
                      "a hub id; knobs under geometry:)"),
    )  # fmt: skip
