"""Core sub-commands: ``drf config show`` and ``drf sample``.

Only argparse is imported at load time; handlers import torch and diffusers when they run, so ``drf --help`` stays
instant.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from trainers.plugins import resolve
from trainers.recipes import RECIPES

# Run-config schemas by name, as "module:attribute" so that listing them imports nothing heavy: ``drf sample``'s
# and one per training recipe. A config file is matched to its schema by its recipe section (a top-level ``drf:``,
# ``grpo:``, ... key).
RUN_SCHEMAS = {"sample": "drf.sample:SampleRunConfig"} | {name: recipe.schema for name, recipe in RECIPES.items()}


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The CONFIG argument and repeatable ``--set KEY=VALUE`` overrides every config-driven command takes."""
    parser.add_argument("config", help="YAML run config (see configs/)")
    add_set_arg(parser)


def add_set_arg(
    parser: argparse.ArgumentParser, help: str = "override a config value, e.g. --set sampling.num_steps=4 (repeatable)"
) -> None:
    """Repeatable ``--set KEY=VALUE`` config overrides, collected in ``args.overrides`` for ``load_config``."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def register(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="inspect run configs")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser("show", help="print the resolved config (defaults + file + --set overrides)")
    add_config_args(show)
    show.add_argument("--schema", choices=sorted(RUN_SCHEMAS), help="config schema (default: from the file)")
    show.set_defaults(func=config_show)
    reference = config_sub.add_parser("reference", help="list every config key with its type, default and meaning")
    reference.add_argument(
        "--schema", choices=sorted(RUN_SCHEMAS), default="drf", help="config schema (default: drf, DRF training)"
    )
    reference.add_argument("--format", choices=("table", "markdown"), default="table", help="output format")
    reference.set_defaults(func=config_reference)

    sample_parser = subparsers.add_parser(
        "sample",
        help="generate videos for the config's prompts",
        description="Sample one video per prompt with a config's model and chain: a sample config, or a training "
        "config (its base model; give --prompt).",
    )
    add_config_args(sample_parser)
    sample_parser.add_argument(
        "--prompt", action="append", default=[], help="sample this prompt instead of the config's (repeatable)"
    )
    sample_parser.add_argument("--out", help="output directory (default: logging.output_dir/name)")
    sample_parser.set_defaults(func=sample_command)


def resolve_schema(config_path: str | None, name: str | None = None) -> type:
    """The run-config dataclass for a file: named explicitly, or picked by the file's recipe section."""
    if name is None:
        name = "sample"
        if config_path:
            from drf.config import read_yaml

            data = read_yaml(config_path)  # a syntax error is reported here, at its line, not as a missing section
            name = next((key for key in RECIPES if key in data), "sample")
    return resolve(RUN_SCHEMAS[name])


def config_show(args: argparse.Namespace) -> int:
    from drf.config import dump_config, load_config

    cfg = load_config(args.config, resolve_schema(args.config, args.schema), args.overrides)
    print(dump_config(cfg), end="")
    return 0


def config_reference(args: argparse.Namespace) -> int:
    from drf.config import describe

    schema = resolve_schema(None, args.schema)
    rows = [(key, kind, repr(default), text) for key, kind, default, text in describe(schema)]
    others = ", ".join(name for name in sorted(RUN_SCHEMAS) if name != args.schema)
    what = "drf sample" if args.schema == "sample" else f"drf train, {args.schema}: section"
    # The heading names the schema shown and the others; beside a markdown table it goes to stderr, so the
    # table can be redirected into a document as it is.
    print(f"schema {args.schema} ({what}); others: --schema {others}",
          file=sys.stderr if args.format == "markdown" else sys.stdout)  # fmt: skip
    if "rewards" in {f.name for f in fields(schema)}:
        rows += reward_rows()
    if args.format == "markdown":
        print("| key | type | default | meaning |\n|---|---|---|---|")
        for key, kind, default, text in rows:
            escaped = kind.replace("|", "\\|")
            print(f"| `{key}` | {escaped} | `{default}` | {text} |")
        return 0
    from drf.table import format_table

    for line in format_table(("key", "type", "default", "meaning"), rows):
        print(line)
    return 0


def reward_rows() -> list[tuple[str, str, str, str]]:
    """One reference row per registered built-in reward (``drf.rewards.REWARDS``)."""
    from drf.rewards import REWARDS

    return [
        (f"rewards: {{name: {name}}}", "built-in reward", "", f"{reward.help}; reads {reward.reads}, "
         f"{'differentiable' if reward.differentiable else 'not differentiable'}")
        for name, reward in REWARDS.items()
    ]  # fmt: skip


def sample_command(args: argparse.Namespace) -> int:
    import time

    from drf.config import load_config
    from drf.errors import InputError
    from drf.sample import SampleRunConfig, sample_videos

    cfg = load_config(args.config, resolve_schema(args.config), args.overrides)
    if not isinstance(cfg, SampleRunConfig):  # a training config: its base model, chain and outputs
        if not args.prompt:
            raise InputError(f"{args.config} is a training config (its prompts are a file); give --prompt TEXT")
        # Beside the run's directory, never in it: the samples' config.yaml would replace the run's.
        cfg = SampleRunConfig(name=f"{cfg.name}_samples", seed=cfg.seed, model=cfg.model, sampling=cfg.sampling,
                              logging=cfg.logging, runtime=cfg.runtime)  # fmt: skip
    if args.prompt:
        cfg.prompts = list(args.prompt)
    out_dir = Path(args.out) if args.out else Path(cfg.logging.output_dir) / cfg.name
    start = time.perf_counter()
    paths = sample_videos(cfg, out_dir)
    elapsed = time.perf_counter() - start
    m = cfg.model
    print(
        f"sampled {len(paths)} video{'' if len(paths) == 1 else 's'} ({m.num_frames}x{m.height}x{m.width}, {cfg.sampling.num_steps} steps) "
        f"in {elapsed:.1f} s -> {out_dir}"
    )
    for path in paths:
        print(f"  {path}")
    return 0
