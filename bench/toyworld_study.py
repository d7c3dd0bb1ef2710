"""DRF against GRPO on the toy world, at an equal wall-clock budget: held-out oracle score, critic reward, latent
geometry rewards and dynamic degree, for base / DRF / GRPO(critic) / GRPO(critic + geometry) / DiffusionNFT, over
several seeds.

Each method trains from the shipped toy models with its own config (configs/toyworld_drf.yaml,
configs/toyworld_grpo.yaml) for the same training time; evaluations at fixed fractions of that budget are paused out
of the clock, so the curves say what each method reached after how much training. Held-out evaluation: the config's
eval prompts, one video each from fixed noise (the same noise for every method), scored by the critic, judged by the
pixel oracle, and read by the toy latent geometry model (smoothness, reprojection, trajectory against the named
camera move, dynamic degree). The oracle is never a training reward.

    python bench/toyworld_study.py --minutes 3 --seeds 0 1 2 [--out docs/toyworld_study.json]

Prints a markdown table (mean ± std over seeds: oracle alignment total and per aspect, critic, geometry) and the time
at which DRF first reached GRPO's final oracle alignment; with --out also writes the records and an SVG plot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drf.commands import add_set_arg  # noqa: E402

METHODS: dict[str, tuple[str, list[str]]] = {
    "base": ("configs/toyworld_drf.yaml", []),
    "drf": ("configs/toyworld_drf.yaml", []),
    "grpo_critic": ("configs/toyworld_grpo.yaml", ["rewards=[{name: critic}]"]),
    "grpo_critic_geometry": ("configs/toyworld_grpo.yaml", []),
    "nft": ("configs/toyworld_nft.yaml", []),
}
ALIGNMENT = "eval/oracle/alignment/total"
ASPECTS = ("object", "color", "count", "size", "spatial", "object_motion", "camera_motion")  # the oracle's
COLUMNS = (
    ("oracle align", ALIGNMENT),
    *((a.replace("_", " "), f"eval/oracle/alignment/aspect/{a}") for a in ASPECTS),
    ("critic", "eval/reward/total"),
    ("geo smooth", "geo/smoothness"),
    ("geo reproj", "geo/reprojection"),
    ("geo traj", "geo/trajectory"),
    ("dyn degree", "geo/dynamic_degree"),
)


def build_trainer(method: str, seed: int, out_dir: Path, overrides: list[str]) -> Any:
    from drf.cli import load_commands
    from drf.commands import resolve_schema
    from drf.config import load_config
    from trainers.commands import recipe_of
    from trainers.plugins import resolve
    from trainers.recipes import RECIPES

    load_commands()  # registers the toy world's judge, which the toyworld configs name
    path, extra = METHODS[method]
    schema = resolve_schema(str(ROOT / path))
    section = recipe_of(schema, path)
    overrides = [
        f"seed={seed}",
        f"name={method}-seed{seed}",
        f"logging.output_dir={out_dir}",
        "logging.report=false",
        f"{section}.export=false",
        f"{section}.steps=100000",
        f"{section}.checkpoint_every=0",
        *extra,
        *(o.replace("RECIPE.", f"{section}.") for o in overrides),
    ]
    cfg = load_config(str(ROOT / path), schema, overrides)
    return resolve(RECIPES[section].trainer)(cfg)


@torch.no_grad()
def geometry_of_eval(trainer: Any, lgm: Any) -> dict[str, float]:
    """Latent geometry rewards of the eval prompts' videos: the very videos ``trainer.evaluate`` sampled (same noise
    streams, batches and precision), read from their final latents by the latent geometry model."""
    from drf.geometry.rewards import geometry_rewards
    from trainers.evaluation import eval_videos
    from trainers.optim import ema_weights
    from trainers.rewards import camera_motion_of

    prompts = trainer._eval_prompts()
    settings = (trainer.cfg.sampling, trainer.cfg.seed, trainer.train_cfg.eval_batch_size, trainer._autocast)
    with ema_weights(trainer.ema, trainer.params):
        latents = torch.cat([x for _, x, _ in eval_videos(trainer.generator, prompts, range(len(prompts)), *settings)])
        out = geometry_rewards(lgm(latents.float()), [camera_motion_of(p) for p in prompts])
    columns: dict[str, list[float]] = {}
    for b in range(len(prompts)):
        for i, name in enumerate(out.question_ids[b]):
            if bool(out.mask[b, i]):
                columns.setdefault(f"geo/{name.removeprefix('geo_')}", []).append(float(out.per_question[b, i]))
        columns.setdefault("geo/dynamic_degree", []).append(float(out.extras["geo_dynamic_degree"][b]))
    return {k: sum(v) / len(v) for k, v in columns.items()}


def run(
    method: str, seed: int, args: argparse.Namespace, lgm: Any, base: dict[str, float] | None = None
) -> list[dict[str, float]]:
    """[{train_seconds, steps, eval metrics...}] at 0 and at each of ``checkpoints`` equal fractions of the budget."""
    trainer = build_trainer(method, seed, Path(args.runs), args.overrides)
    minutes, checkpoints = args.minutes, args.checkpoints

    def evaluate(step: int, seconds: float) -> dict[str, float]:
        record = {"train_seconds": round(seconds, 1), "steps": step}
        record.update(trainer.evaluate(step))
        record.update(geometry_of_eval(trainer, lgm))
        print(
            f"  {method} seed {seed} step {step} ({seconds:.0f}s): oracle alignment {record.get(ALIGNMENT, float('nan')):.4f}"
            f" critic {record['eval/reward/total']:+.4f}",
            flush=True,
        )
        return record

    if base is not None:  # a fresh LoRA (B = 0) is the base model: its step-0 evaluation is the base's
        records = [dict(base)]
    else:
        records = [evaluate(0, 0.0)]
    if method == "base":
        return records
    budget, spent, step = minutes * 60.0, 0.0, 0
    for k in range(1, checkpoints + 1):
        while spent < budget * k / checkpoints:
            started = time.perf_counter()
            trainer.train_step(step)
            spent += time.perf_counter() - started
            step += 1
        records.append(evaluate(step, spent))
    return records


def summarise(results: dict[str, dict[int, list[dict[str, float]]]]) -> tuple[str, list[str]]:
    def cell(values: list[float]) -> str:
        if not values:
            return "—"
        mean = statistics.fmean(values)
        return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"

    measured = {key for by_seed in results.values() for records in by_seed.values() for r in records for key in r}
    columns = [(name, key) for name, key in COLUMNS if key in measured]  # aspects the eval questions ask about
    header = "| method | steps | " + " | ".join(name for name, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for method, by_seed in results.items():
        finals = [records[-1] for records in by_seed.values()]
        steps = f"{statistics.fmean(r['steps'] for r in finals):.0f}"
        cells = [cell([r[key] for r in finals if key in r]) for _, key in columns]
        lines.append(f"| {method} | {steps} | " + " | ".join(cells) + " |")
    notes = []
    for grpo in ("grpo_critic", "grpo_critic_geometry"):
        if grpo not in results or "drf" not in results:
            continue
        for seed, records in results[grpo].items():
            target = records[-1].get(ALIGNMENT)
            drf = results["drf"].get(seed, [])
            reached = next((r for r in drf if r.get(ALIGNMENT, -1.0) >= target), None) if target is not None else None
            when = f"after {reached['train_seconds']:.0f}s of training" if reached else "not within the budget"
            if reached is not None and reached["steps"] == 0:
                when = f"before training: {grpo} ended no higher than the base ({drf[0][ALIGNMENT]:.4f})"
            notes.append(
                f"seed {seed}: DRF reached {grpo}'s final oracle alignment {target:.4f} {when} "
                f"({grpo} trained {records[-1]['train_seconds']:.0f}s; the goal is a third of that)"
            )
    return "\n".join(lines), notes


def plot(results: dict[str, dict[int, list[dict[str, float]]]], path: Path) -> Path:
    """Oracle alignment against training seconds, mean over seeds per evaluation, one line per method (SVG)."""
    from drf.report.svg import line_chart

    series = {}
    for method, by_seed in results.items():
        runs = list(by_seed.values())
        points = []
        for k in range(min(len(r) for r in runs)):
            points.append((statistics.fmean(r[k]["train_seconds"] for r in runs),
                           statistics.fmean(r[k].get(ALIGNMENT, float("nan")) for r in runs)))  # fmt: skip
        series[method] = points
    title = "toy world: held-out oracle alignment vs training time (mean over seeds)"
    svg = line_chart(series, title=title, x_label="training seconds", width=720, height=360)
    path.write_text(svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1) + "\n")  # a standalone file
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="Training wall-clock budget per method and seed.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--checkpoints", type=int, default=2, help="Evaluations spread over the budget.")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--runs", default="runs/study", help="Where the runs write their samples.")
    parser.add_argument("--out", default="", help="Write every record as JSON here (and the plot beside it, .svg).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--summarise", default="", metavar="JSON", help="Print the table of an earlier --out; no training.")
    add_set_arg(parser, "Config override for every run; RECIPE. stands for the run's drf./grpo./nft. section "
                "(repeatable).")  # fmt: skip
    args = parser.parse_args()
    if args.summarise:
        saved = json.loads(Path(args.summarise).read_text())
        table, notes = summarise({m: {int(k): v for k, v in by.items()} for m, by in saved["results"].items()})
        print("\n".join([table, *notes]))
        return 0
    torch.set_num_threads(args.threads)

    from drf.geometry.lgm import LatentGeometryModel
    from drf.toyworld.train.lgm import toy_lgm_path

    lgm = LatentGeometryModel.from_pretrained(toy_lgm_path()).requires_grad_(False)
    started = time.perf_counter()
    results: dict[str, dict[int, list[dict[str, float]]]] = {}
    for seed in args.seeds:
        for method in args.methods:
            base = results.get("base", {}).get(seed, [None])[0]
            results.setdefault(method, {})[seed] = run(method, seed, args, lgm, base)
    table, notes = summarise(results)
    print(
        f"\ntoy-world study: {args.minutes} min of training per method and seed, seeds {args.seeds}, "
        f"{torch.get_num_threads()} threads, {time.perf_counter() - started:.0f}s in all\n"
    )
    print(table)
    for line in notes:
        print(line)
    if args.out:
        Path(args.out).write_text(json.dumps({"minutes": args.minutes, "results": results}, indent=1) + "\n")
        print(f"wrote {args.out} and {plot(results, Path(args.out).with_suffix('.svg'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
