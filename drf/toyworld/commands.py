"""``drf toyworld train vae|t2v|critic|geometry``, ``drf toyworld manifest --check``, ``drf toyworld prompts`` and
``drf toyworld figures``.

Training writes into an asset folder (``--out``, the shipped ``drf/assets/toyworld`` by default) laid out as
``generator/`` (a diffusers WanPipeline directory; the VAE is its ``vae/``) and ``critic/``, and records each model
in that folder's ``manifest.json``. The VAE comes first (the T2V model learns its latents), then the T2V model, then
the critic (it also trains on the T2V model's samples). ``geometry`` distils the latent geometry model from exact
renders encoded by the shipped VAE and writes it, with its own manifest, into ``drf/assets/geometry`` by default.
"""

from __future__ import annotations

import argparse
import sys

from drf.errors import InputError
from trainers.plugins import register_judge

MODELS = ("vae", "t2v", "critic", "geometry")

# `<recipe>.judge: toyworld`: the pixel oracle scores every evaluation video (resolved only when a run uses it).
register_judge("toyworld", "drf.toyworld.oracle:score")


def register(subparsers: argparse._SubParsersAction) -> None:
    toy = subparsers.add_parser("toyworld", help="Train and check the shipped toy-world models.")
    toy_sub = toy.add_subparsers(dest="toyworld_command", metavar="ACTION")
    train = toy_sub.add_parser("train", help="Train one toy model on rendered clips and record it in the manifest.")
    train.add_argument("model", choices=MODELS)
    train.add_argument("--steps", type=int, default=None, help="Optimizer steps (default: the script's own).")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=None, help="Asset folder to write (default: drf/assets/toyworld).")
    train.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1'.")
    train.add_argument("--minutes", type=float, default=0.0, help="Stop training after this wall time (0: no cap).")
    train.add_argument(
        "--threads", type=int, default=None, help="CPU threads for training (default: the script's own, both cores)."
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a field of the script's training config (e.g. --set batch=8; geometry: --set train.batch=8); "
        "repeatable.",
    )
    train.set_defaults(func=_train)
    manifest = toy_sub.add_parser("manifest", help="Verify the shipped toy models against manifest.json.")
    manifest.add_argument("--check", action="store_true", help="Recompute sha256s and report mismatches.")
    manifest.add_argument("--root", default=None, help="Asset folder (default: drf/assets/toyworld).")
    manifest.set_defaults(func=_manifest)
    prompts = toy_sub.add_parser(
        "prompts", help="Write a JSONL prompt file (train and held-out eval splits) drawn from the toy world."
    )
    prompts.add_argument("out", help="JSONL file to write ({prompt, split} per line).")
    prompts.add_argument("--train", type=int, default=64, help="Prompts of train-split scenes.")
    prompts.add_argument("--eval", type=int, default=8, help="Prompts of held-out eval-split scenes.")
    prompts.add_argument(
        "--seed", type=int, default=7, help="Scene seed (the shipped models trained on seed 0's train scenes)."
    )
    prompts.add_argument(
        "--objects", type=int, default=0,
        help="Only scenes of this many objects, no two alike (0: any). The demo's file uses 2: two different "
        "objects, each with its own colour, shape, size and side, are where the toy T2V model errs most.",
    )
    prompts.set_defaults(func=_prompts)
    figures = toy_sub.add_parser(
        "figures", help="Regenerate docs/img/toyworld_*.png from the shipped models (renders, round trips, samples)."
    )
    figures.add_argument("--out", default=None, help="Folder to write (default: docs/img of the checkout).")
    figures.add_argument("--root", default=None, help="Asset folder (default: drf/assets/toyworld).")
    figures.add_argument("--only", default="vae,t2v,probes", help="Figures to write: vae, t2v, probes (comma-separated).")
    figures.add_argument(
        "--run", default=None, help="A finished run (e.g. runs/demo): write only toyworld_demo.png, before vs after."
    )
    figures.set_defaults(func=_figures)
    toy.set_defaults(func=lambda args: (toy.print_help(), 1)[1])


def _config(schema: type, args: argparse.Namespace, prefix: str = ""):
    """The training config: the script's defaults, then the flags, then ``--set`` (typed and checked like a run
    config's; ``prefix`` is where the flags' fields live)."""
    from drf.config import load_config

    flags = {"seed": args.seed, "minutes": args.minutes, "threads": args.threads, "steps": args.steps}
    overrides = [f"{prefix}{key}={value}" for key, value in flags.items() if value is not None]
    return load_config(None, schema, overrides + args.overrides)


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from drf.toyworld.assets import ASSETS_DIR, CRITIC_DIR, GENERATOR_DIR
    from drf.toyworld.train import manifest

    if args.model == "geometry":
        return _train_geometry(args)
    root = Path(args.out) if args.out else ASSETS_DIR
    if args.model == "vae":
        from drf.toyworld.train.vae import VAETrainConfig as Config
        from drf.toyworld.train.vae import train_vae as run

        directory, exclude = root / GENERATOR_DIR / "vae", ()
    elif args.model == "t2v":
        from drf.toyworld.train.t2v import T2VTrainConfig as Config
        from drf.toyworld.train.t2v import train_t2v as run

        directory, exclude = root / GENERATOR_DIR, ("vae",)
    else:
        from drf.toyworld.train.critic import CriticTrainConfig as Config
        from drf.toyworld.train.critic import train_critic as run

        directory, exclude = root / CRITIC_DIR, ()
    config = _config(Config, args)
    directory.mkdir(parents=True, exist_ok=True)
    import torch

    from drf.device import resolve_device

    device = resolve_device(args.device)
    previous = manifest.previous_entry(root, args.model) if getattr(config, "init_from", "") else None
    _, summary = run(config, root, device=str(device))
    info = {
        "command": manifest.command_line(),
        "seed": args.seed,
        "device": manifest.device_name(device),
        "torch": torch.__version__,
        **summary,
    }
    if previous is not None:
        info = manifest.continued(info, previous)
    path = manifest.record(root, args.model, directory, info, exclude)
    print(f"{args.model}: wrote {directory} and recorded it in {path}")
    return 0


def _train_geometry(args: argparse.Namespace) -> int:
    from drf.toyworld.train.lgm import ASSETS_DIR, ToyLGMConfig, train_toy_lgm

    config = _config(ToyLGMConfig, args, prefix="train.")
    out = args.out or ASSETS_DIR
    train_toy_lgm(out, config)
    print(f"geometry: wrote {out}/toy_lgm and recorded it in {out}/manifest.json")
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from drf.toyworld.assets import ASSETS_DIR, load_manifest, verify_manifest

    root = Path(args.root) if args.root else ASSETS_DIR
    models = load_manifest(root).get("models", {})
    for name, entry in models.items():
        size = sum(f["bytes"] for f in entry.get("files", {}).values())
        print(f"{name}: {len(entry.get('files', {}))} files, {size / 1e6:.2f} MB, metrics {entry.get('metrics', {})}")
    if not args.check:
        return 0
    problems = verify_manifest(root)
    for problem in problems:
        print(f"mismatch: {problem}")
    print("manifest ok" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def _prompts(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from drf.toyworld.grammar import prompt_for
    from drf.toyworld.scene import sample_scenes

    lines: list[str] = []
    taken: set[str] = set()
    for split, count in (("train", args.train), ("eval", args.eval)):
        # Distinct prompts, none of the eval split's among the train split's: a held-out change is then paired over
        # as many different prompts as the file names, none of them trained on.
        scenes = sample_scenes(8 * count * (3 if args.objects else 1), args.seed, split)
        pool = dict.fromkeys(prompt_for(s) for s in scenes if not args.objects or _distinct_objects(s) == args.objects)
        prompts = [p for p in pool if p not in taken][:count]
        if len(prompts) < count:
            raise InputError(f"--{split} {count}: seed {args.seed} gives only {len(prompts)} distinct {split} prompts")
        taken.update(prompts)
        lines += [json.dumps({"prompt": p, "split": split}) for p in prompts]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.train} train and {args.eval} eval prompts to {out}")
    return 0


def _distinct_objects(scene) -> int:
    """Objects in ``scene``, or 0 when two of them look alike (a count prompt: "two red cubes")."""
    looks = {(o.color, o.shape, o.size) for o in scene.objects}
    return len(looks) if len(looks) == len(scene.objects) else 0


def _figures(args: argparse.Namespace) -> int:
    from pathlib import Path

    from drf.toyworld.figures import FIGURE_DIR, FIGURES, demo_figure, write_figures

    out = Path(args.out) if args.out else FIGURE_DIR
    if args.run:
        paths = [demo_figure(Path(args.run), out / "toyworld_demo.png")]
    else:
        only = tuple(args.only.split(","))
        unknown = sorted(set(only) - set(FIGURES))
        if unknown:
            print(f"error: --only {args.only}: unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)}",
                  file=sys.stderr)
            return 2
        paths = write_figures(out, Path(args.root) if args.root else None, only)
    for path in paths:
        print(f"wrote {path}")
    return 0
