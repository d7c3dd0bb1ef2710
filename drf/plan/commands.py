"""``drf plan CONFIG``: the peak memory of one optimiser step of a run config, before anything is downloaded or
launched, and what to change when it does not fit.

Only argparse is imported at load time; the handler imports torch and the models when it runs.
"""

from __future__ import annotations

import argparse

from drf.commands import add_config_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="plan a training step's GPU memory from the config alone (no weights, no GPU)",
        description="Run one optimiser step of the config's recipe on fake tensors and print its peak memory by "
        "kind and phase, whether it fits the GPU, and otherwise the cheapest changes that would fit (exit status 1 "
        "when it does not fit).",
    )
    add_config_args(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpu", help="GPU model: a10g, l4, rtx4090, a100-40gb, l40s, rtx6000-ada, a100-80gb, h100 "
                       "(default), h200, b200")  # fmt: skip
    where.add_argument("--gpu-memory", metavar="SIZE", help="GPU memory instead of a model name, e.g. 80GB or 48GiB")
    parser.add_argument("--processes", type=int, default=1, help="processes (GPUs) the run is launched on")
    parser.add_argument("--fsdp", action="store_true", help="the run shards the trained model with FSDP2 "
                        "(accelerate launch --config_file configs/accelerate/*.fsdp2.yaml)")  # fmt: skip
    parser.add_argument("--no-advice", action="store_true", help="do not plan alternatives when the step does not fit")
    parser.set_defaults(func=plan_command)


def plan_command(args: argparse.Namespace) -> int:
    from drf.commands import resolve_schema
    from drf.config import load_config
    from drf.errors import ConfigError
    from drf.plan.advice import suggest
    from drf.plan.gpus import RESERVED, gpu_memory
    from drf.plan.report import describe_plan, describe_suggestion
    from drf.plan.step import plan_step, sharded
    from trainers.recipes import RECIPES

    if args.processes < 1:
        raise ConfigError(f"--processes must be >= 1 (got {args.processes})")
    gpu, total = gpu_memory(args.gpu, args.gpu_memory)
    budget = total - RESERVED
    schema = resolve_schema(args.config)
    cfg = load_config(args.config, schema, args.overrides)
    if not any(hasattr(cfg, name) for name in RECIPES):
        raise ConfigError(f"{args.config}: no recipe section to plan; drf plan plans training configs (a top-level "
                          f"{', '.join(repr(n + ':') for n in RECIPES)} section)")  # fmt: skip
    base = plan_step(cfg)
    plan = sharded(base, args.processes) if args.fsdp and args.processes > 1 else base
    for line in describe_plan(args.config, plan, gpu, total, budget, args.processes, args.fsdp):
        print(line)
    if plan.peak.bytes <= budget or args.no_advice:
        return 0
    print("changes that would fit, cheapest first (each planned again):")

    def replan(overrides: tuple[str, ...]):
        return plan_step(load_config(args.config, schema, [*args.overrides, *overrides]))

    for suggestion in suggest(cfg, base, budget, replan, args.processes, args.fsdp):
        print(describe_suggestion(suggestion, budget), flush=True)
    return 1
