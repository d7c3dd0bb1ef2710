"""The training recipes, in one table every command reads: the config section that selects a recipe, its run-config
schema and its train function.

Entries are import paths, so ``drf --help`` and ``drf config`` can list the recipes without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """``schema``: "module:RunConfig" of a run config with a top-level section named like the recipe;
    ``trainer``: "module:Class" built as ``Class(config, resume=None)`` (for stepping a run by hand, as the study
    bench does); ``train``: "module:function" taking ``(config, resume=None)`` and returning the run directory."""

    schema: str
    trainer: str
    train: str


RECIPES = {
    "drf": Recipe(schema="trainers.drf:DRFRunConfig", trainer="trainers.drf:DRFTrainer", train="trainers.drf:train"),
    "grpo": Recipe(
        schema="trainers.grpo:GRPORunConfig", trainer="trainers.grpo:GRPOTrainer", train="trainers.grpo:train"
    ),
    "nft": Recipe(schema="trainers.nft:NFTRunConfig", trainer="trainers.nft:NFTTrainer", train="trainers.nft:train"),
}
