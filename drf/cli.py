"""The ``drf`` command line: a thin dispatcher over library functions.

Each package contributes its sub-commands through a ``register(subparsers)`` function in a small module that
imports only argparse at load time; the heavy imports happen inside the handlers, so ``drf --help`` is fast.
Errors a person caused (``DRFError``) print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from drf.errors import DRFError
from drf.runtime import quiet_libraries, wait_passively

# Modules exposing ``register(subparsers)``; a missing optional module is skipped so partial installs still work.
COMMAND_MODULES = (
    "drf.commands",
    "drf.toyworld.commands",
    "prompts.commands",
    "critics.commands",
    "trainers.commands",
    "drf.report.commands",
    "drf.plan.commands",
)


def load_commands() -> list:
    """The command modules that are installed, imported: loading them also registers what the applications offer
    the trainers (the toy world's judge, the HTML report). A script that builds trainers itself calls this first."""
    modules = []
    for name in COMMAND_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                continue
            raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drf",
        description="Fine-tune text-to-video models with differentiable rewards from frozen VLM critics.",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show the libraries' loading bars and start-up messages too"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in load_commands():
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    wait_passively()  # before any handler imports torch
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet_libraries()  # before any handler imports them
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except DRFError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
