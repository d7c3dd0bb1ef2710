"""``drf train CONFIG``: run the training recipe a config's top-level section names (``drf:`` or ``grpo:``).

Only argparse is imported at load time; the handler imports the recipe when it runs.
"""

from __future__ import annotations

import argparse

from drf.commands import add_config_args
from trainers.plugins import resolve
from trainers.recipes import RECIPES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a video generator with a run config (recipe chosen by its drf:/grpo: section)",
        description="Fine-tune a video generator. Multi-GPU: accelerate launch -m drf train CONFIG.",
    )
    add_config_args(parser)
    parser.add_argument(
        "--resume",
        metavar="latest|PATH",
        help="continue from the run's newest checkpoint ('latest') or a checkpoints/step-N directory",
    )
    parser.set_defaults(func=train_command)


def recipe_of(schema: type, config_path: str) -> str:
    """The recipe section a run-config schema carries (``drf`` or ``grpo``)."""
    from dataclasses import fields

    names = {f.name for f in fields(schema)}
    found = [name for name in RECIPES if name in names]
    if not found:
        from drf.errors import ConfigError

        raise ConfigError(
            f"{config_path}: no recipe section to train with; add a top-level 'drf:' (or 'grpo:') section"
        )
    return found[0]


def train_command(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from drf.commands import resolve_schema
    from drf.config import load_config

    schema = resolve_schema(args.config)
    recipe = recipe_of(schema, args.config)
    cfg = load_config(args.config, schema, args.overrides)
    resolve(RECIPES[recipe].train)(cfg, resume=args.resume)
    if dist.is_available() and dist.is_initialized():  # leave together: a rank exiting mid-teardown can abort another
        dist.destroy_process_group()
    return 0
