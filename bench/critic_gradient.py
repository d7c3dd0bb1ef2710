"""Does the toy critic's gradient change what its questions ask, or paint speckle that raises its reward?

DRF backpropagates the critic's reward through the VAE decoder into the latents. A critic that answers well can still
reward a pixel pattern instead of the asked attribute; this bench measures which way its gradient points.

Per family (colour, count, position; size on request) and case: a held-out scene (the *asked* scene, whose
prompt is the target) is rendered with ONE thing changed (the *shown* scene: the cube drawn blue when the prompt says
red, a second cube when it says one, the two objects' places exchanged when it says "the red cube left of the blue
sphere", the other size) and encoded with the toy VAE (posterior mode, normalised latents: the space
the generator denoises in). From those latents, ``--steps`` steps of gradient ascent (see ``ascend``) of the
critic's reward go through the decoder, as DRF's gradient does: latents -> ``decode_latents`` -> the critic's frames
(its manifest's frame policy) -> ``CriticReward`` (the prompt's alignment questions, yes/no and choice, with their
expected answers) -> ``aggregate``. Two targets per case, each its own ascent from the same latents:

- **right**: the asked prompt;
- **control**: a wrong prompt of the same family: a third colour, three objects, or (position and size, which have
  two values only) the prompt of what the video already shows.

The pixel oracle then reads the decoded videos. A case counts only if the oracle reads the shown scene's answer to
every *key* question (the asked prompt's questions whose true answer differs between the asked and the shown scene)
on the unchanged round trip. **flip** = the oracle now gives the asked scene's answer to every key question. The
headline is flip after ascent toward the right prompt against flip after ascent toward the control: a critic whose
gradient follows its questions flips the first far more often; one that paints speckle flips neither (or both).
``control hit`` is how often the control ascent reaches its own target (the control prompt's key questions).
The **ideal** is the asked scene's own render through the VAE: what a perfect ascent would reach. The oracle should
read it as asked (``flip_ideal``; otherwise the VAE, not the critic, is the limit), and its change from the round trip
is the reference for where a change should land.

Where the change lands: mean absolute pixel change (after minus before, over channels and frames) inside the objects
(the renderer's masks of the asked and the shown scene, dilated by ``DILATE`` pixels) and outside them, and their
ratio (``out/in``) beside the ideal's. Changing an attribute changes pixels inside; speckle changes the floor and sky
as well.

Scenes: the eval split, seeds ``SEED_BASE + seed * 1_000_003 + family * 100_000 + k``. SEED_BASE = 7e9 lies above
every range the project draws from: ``clips()`` (VAE, T2V, figures, gates) uses ``seed * 1_000_003 + i`` with seeds
below 1,000; the critic trains from 50,000,000 and its gates use 90,000,000 + seed * 1_000_003 (4.33e9 for seed 4242).

Prints one line per family and the headline ratios; ``--json`` writes every figure and case, ``--png`` a grid (per
case: before | toward the asked prompt | toward the control, each at its first, middle and last frame). Never asserts.

    OMP_NUM_THREADS=1 python bench/critic_gradient.py --cases 4 --steps 30 --png /tmp/grad.png --json /tmp/grad.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan

from critics.augment import AugmentConfig
from critics.config import CriticConfig
from critics.registry import load_critic
from critics.reward import CriticReward
from drf.frames import FramesConfig, frames_from_config
from drf.geometry.distill import encode_latents
from drf.models.wan import decode_latents
from drf.report.images import pick_frames
from drf.rewards import aggregate
from drf.stats import mean_and_se
from drf.toyworld.assets import load_manifest, toy_critic_frames, toy_critic_path, toy_critic_settings, toy_vae_path
from drf.toyworld.facts import answer
from drf.toyworld.figures import Row, grid
from drf.toyworld.grammar import prompt_for
from drf.toyworld.oracle import analyze
from drf.toyworld.render import render
from drf.toyworld.scene import WORLD_FRAMES, Scene, sample_scene
from drf.toyworld.train.critic import MIN_PIXELS
from drf.toyworld.train.critic_data import minimally_changed, questions_of
from drf.toyworld.truth import truth
from prompts.schema import QuestionSet

SEED_BASE = 7_000_000_000
# Object motion is not among them: ``minimally_changed`` changes a motion's name for the questions it asks, not the
# object's travel, so a render of its scene moves as before.
FAMILIES = ("color", "count", "position", "size")
OPTIMIZERS = ("grad", "sign", "adam")
DEFAULT_FAMILIES = ("color", "count", "position")
DILATE = 2  # pixels the object masks grow by: a decoded edge bleeds a pixel or two
MAX_DRAWS = 40  # scenes tried per wanted case (a family's change does not apply to every scene, or the round trip
# already fails the key question)
FIGURE_CASES = 2  # cases per family in the PNG


@dataclass
class Case:
    """One measurement: the prompt of ``asked`` is the target; ``shown`` is what is rendered (one change)."""

    family: str
    seed: int
    asked: Scene
    shown: Scene
    control: Scene
    key: list  # the asked prompt's questions whose answer differs between asked and shown
    control_key: list  # the control prompt's questions whose answer differs between control and shown


@dataclass
class Models:
    """The VAE, the critic as DRF's reward, and how they see a clip."""

    vae: AutoencoderKLWan
    reward: CriticReward
    frames: int  # frames per clip (what the VAE was trained on)
    critic_frames: list[int] | None  # the critic's frame selection (None: all)
    describe: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Models


def load_models(critic_dir: Path, vae_dir: Path, augment: int = 0) -> Models:
    """The critic built as DRF builds it (``load_critic`` with the settings and frame policy its manifest records, or
    the training recipe's own for a critic folder without a manifest entry: a run's ``--out`` before it is shipped)
    and the VAE (``<root>/generator/vae``), with frames per clip from its manifest (the world's when unrecorded).
    ``augment`` > 0 scores the mean over that many random views (``critic.augment.n``)."""
    critic_root = critic_dir.parent
    recorded = bool(load_manifest(critic_root)["models"].get("critic"))
    if recorded:
        settings, frames_cfg = toy_critic_settings(critic_root), toy_critic_frames(critic_root)
    else:
        settings = {"family": "qwen2_vl", "frames_as": "video", "min_pixels": MIN_PIXELS, "max_pixels": 224 * 224}
        frames_cfg = {"policy": "all"}
    critic = load_critic(CriticConfig(path=str(critic_dir), **settings))
    vae = AutoencoderKLWan.from_pretrained(str(vae_dir)).eval().requires_grad_(False)
    vae_entry = load_manifest(vae_dir.parent.parent)["models"].get("vae", {})
    frames = int(vae_entry.get("data", {}).get("frames", WORLD_FRAMES))
    describe = {
        "critic": str(critic_dir),
        "critic_settings": settings,
        "critic_frames": frames_cfg,
        "critic_settings_from": "manifest" if recorded else "training recipe (no manifest entry)",
        "vae": str(vae_dir),
        "frames": frames,
        "augment": augment,
    }
    picked = frames_from_config(FramesConfig(**frames_cfg), frames)
    return Models(vae, CriticReward(critic, AugmentConfig(n=augment)), frames, picked, describe)


# ---------------------------------------------------------------------------------------------------------------
# Cases


def change_of(a: Scene, b: Scene) -> str:
    """Which one thing ``minimally_changed`` changed from ``a`` to ``b``."""
    if len(a.objects) != len(b.objects):
        return "count"
    if a.camera != b.camera:
        return "camera"
    colors_a, colors_b = [o.color for o in a.objects], [o.color for o in b.objects]
    if colors_a != colors_b:
        if sorted(colors_a) == sorted(colors_b):
            return "swap_colors"
        # One new colour for the recoloured objects (twins recoloured apart would change the count as well).
        return "color" if len({b for a, b in zip(colors_a, colors_b) if a != b}) == 1 else "colors"
    for name in ("shape", "size", "motion", "position"):
        if [getattr(o, name) for o in a.objects] != [getattr(o, name) for o in b.objects]:
            return name
    return "none"


def alignment_questions(prompt: str) -> list:
    """The prompt's alignment questions with closed answers: what the toy DRF config scores for alignment."""
    return [q for q in questions_of(prompt) if q.aspect == "alignment" and q.kind in ("binary", "choice")]


def key_questions(target: Scene, shown: Scene) -> list:
    """The target prompt's questions whose true answer differs between ``target`` and ``shown`` (both known)."""
    out = []
    for q in alignment_questions(prompt_for(target)):
        a, b = truth(target, q), truth(shown, q)
        if a is not None and b is not None and a != b:
            out.append(q)
    return out


def _kinds(scene: Scene) -> list[tuple[str, str, str]]:
    return [(o.shape, o.color, o.size) for o in scene.objects]


def with_count(scene: Scene, index: int, count: int) -> Scene:
    """``scene`` with ``count`` objects of object ``index``'s kind (for its prompt only: copies are not placed)."""
    o, kinds = scene.objects[index], _kinds(scene)
    same = [x for x, k in zip(scene.objects, kinds) if k == kinds[index]]
    others = [x for x, k in zip(scene.objects, kinds) if k != kinds[index]]
    extra = [dataclasses.replace(o, position=(o.position[0] + 1.2 * k, o.position[1])) for k in range(1, count)]
    return dataclasses.replace(scene, objects=tuple(others + (same + extra)[:count]))


def control_for(family: str, asked: Scene, shown: Scene, rng: random.Random) -> Scene | None:
    """A wrong target of the same family: a value neither ``asked`` nor ``shown`` has where the world has one."""
    if family == "color":
        for _ in range(MAX_DRAWS):
            other = minimally_changed(asked, rng)
            if other is not None and change_of(asked, other) == "color" and other.objects != shown.objects:
                return other
        return None
    if family == "count":
        kinds_asked, kinds_shown = _kinds(asked), _kinds(shown)
        counted = next(k for k in kinds_shown if kinds_asked.count(k) != kinds_shown.count(k))
        return with_count(shown, kinds_shown.index(counted), 3)
    return shown  # position, size: two values only; the control asks for what is shown


def draw_case(family: str, seed: int, frames: int) -> Case | None:
    """A case of ``family`` from scene ``seed`` (None when the family's change does not apply to this scene)."""
    asked = sample_scene(seed, "eval", num_frames=frames)
    rng = random.Random(seed)
    for _ in range(MAX_DRAWS):
        shown = minimally_changed(asked, rng)
        if shown is None or change_of(asked, shown) != family:
            continue
        key = key_questions(asked, shown)
        control = control_for(family, asked, shown, rng) if key else None
        if control is not None:
            return Case(family, seed, asked, shown, control, key, key_questions(control, shown))
    return None


def reads(video: torch.Tensor, questions: Sequence, scene: Scene) -> bool:
    """Whether the oracle answers every question as ``scene``'s truth does (video [T,3,H,W] in [0,1])."""
    facts = analyze(video)
    return bool(questions) and all(answer(facts, q) == truth(scene, q) for q in questions)


def object_region(case: Case, frames: int) -> torch.Tensor:
    """[T,1,H,W] bool: pixels of the asked and the shown scene's objects, grown by ``DILATE``."""
    masks = torch.cat([render(case.asked, frames).masks, render(case.shown, frames).masks], dim=1)
    union = masks.any(dim=1, keepdim=True).float()
    return F.max_pool2d(union, 2 * DILATE + 1, stride=1, padding=DILATE) > 0


# ---------------------------------------------------------------------------------------------------------------
# Ascent


def critic_reward(models: Models, latents: torch.Tensor, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames [B,T,3,H,W], reward [B]) of normalised latents, along DRF's path (decode -> critic -> aggregate)."""
    frames = decode_latents(models.vae, latents)
    seen = frames if models.critic_frames is None else frames[:, models.critic_frames]
    question_sets = [QuestionSet(prompt=p, questions=alignment_questions(p)) for p in prompts]
    total, _ = aggregate(models.reward(seen, list(prompts), question_sets=question_sets))
    return frames, total


def ascend(
    models: Models, latents: torch.Tensor, prompts: Sequence[str], steps: int, lr: float, optimizer: str
) -> tuple[torch.Tensor, list[float], list[float]]:
    """``steps`` steps of gradient ascent of each video's reward for its prompt from ``latents`` [B,C,F,h,w];
    returns (the decoded frames after, rewards before, rewards after). Videos are independent (the summed reward's
    gradient for a video's latents is its own reward's), so a batch ascends together.

    ``grad`` steps along the gradient scaled to unit RMS per video, so the step keeps the gradient's layout: what
    the critic's gradient asks to change moves most. ``sign`` and ``adam`` (whose first steps are signed too) move
    every latent element by about ``lr`` wherever the gradient is not exactly zero, which spreads the change over the
    whole frame whatever the critic: use them for flips, not for where the change lands."""
    z = latents.clone().requires_grad_(True)
    adam = torch.optim.Adam([z], lr=lr) if optimizer == "adam" else None
    first: list[float] = []
    for _ in range(steps):
        _, reward = critic_reward(models, z, prompts)
        first = first or reward.tolist()
        z.grad = None
        (-reward.sum()).backward()
        if adam is not None:
            adam.step()
            continue
        with torch.no_grad():
            g = z.grad.neg()  # the ascent direction
            if optimizer == "sign":
                z += lr * g.sign()
            else:  # the gradient itself, scaled to an RMS of 1 per video: where it is large, the latents move most
                z += lr * g / g.square().mean(dim=(1, 2, 3, 4), keepdim=True).sqrt().clamp_min(1e-12)
    with torch.no_grad():
        frames, reward = critic_reward(models, z, prompts)
    return frames, first or reward.tolist(), reward.tolist()


# ---------------------------------------------------------------------------------------------------------------
# The measurement


def collect_cases(models: Models, family: str, count: int, seed: int) -> tuple[list[Case], list, list, int]:
    """``count`` usable cases of ``family`` with their latents [1,C,F,h,w] and round trips [T,3,H,W], and how many
    scenes were tried; a case is usable when the oracle reads the shown scene's answer to every key question on its
    round trip."""
    cases, latents, trips, tried = [], [], [], 0
    base = SEED_BASE + seed * 1_000_003 + FAMILIES.index(family) * 100_000
    while len(cases) < count and tried < MAX_DRAWS * count:
        case = draw_case(family, base + tried, models.frames)
        tried += 1
        if case is None:
            continue
        z = encode_latents(models.vae, render(case.shown, models.frames).rgb[None])
        with torch.no_grad():
            before = decode_latents(models.vae, z)[0]
        if reads(before, case.key, case.shown):
            cases.append(case)
            latents.append(z)
            trips.append(before)
    return cases, latents, trips, tried


def measure_family(models: Models, family: str, count: int, steps: int, lr: float, optimizer: str, seed: int) -> dict:
    """Per case: flips, control hits, rewards and pixel change inside/outside the objects, for both targets."""
    cases, latents, before, tried = collect_cases(models, family, count, seed)
    if not cases:
        return {"family": family, "n": 0, "tried": tried, "cases": []}
    prompts = [prompt_for(c.asked) for c in cases] + [prompt_for(c.control) for c in cases]
    after, r0, r1 = ascend(models, torch.cat(latents + latents), prompts, steps, lr, optimizer)
    asked = encode_latents(models.vae, torch.stack([render(c.asked, models.frames).rgb for c in cases]))
    with torch.no_grad():
        ideal = decode_latents(models.vae, asked)  # the asked scene's own round trip: what a perfect ascent reaches
    records = []
    for i, case in enumerate(cases):
        right, control = after[i], after[len(cases) + i]
        inside = object_region(case, models.frames).expand_as(before[i])
        record = {
            "seed": case.seed,
            "asked": prompt_for(case.asked),
            "shown": prompt_for(case.shown),
            "control": prompt_for(case.control),
            "key": [q.id for q in case.key],
            "flip_right": reads(right, case.key, case.asked),
            "flip_control": reads(control, case.key, case.asked),
            "control_hit": reads(control, case.control_key, case.control) if case.control_key else None,
            "flip_ideal": reads(ideal[i], case.key, case.asked),
            "reward_right": [round(r0[i], 4), round(r1[i], 4)],
            "reward_control": [round(r0[len(cases) + i], 4), round(r1[len(cases) + i], 4)],
        }
        for name, video in (("right", right), ("control", control), ("ideal", ideal[i])):
            change = (video - before[i]).abs()
            record[f"inside_{name}"] = round(float(change[inside].mean()), 5)
            record[f"outside_{name}"] = round(float(change[~inside].mean()), 5)
        records.append(record)
    videos = [(before[i], after[i], after[len(cases) + i]) for i in range(len(cases))]
    return {"family": family, "n": len(cases), "tried": tried, "cases": records, "videos": videos}


def summarize(result: dict) -> dict:
    """Means and standard errors over a family's cases."""
    out = {"family": result["family"], "n": result["n"], "tried": result["tried"]}
    cases = result["cases"]
    names = ("flip_right", "flip_control", "control_hit", "flip_ideal") + tuple(
        f"{where}_{arm}" for where in ("inside", "outside") for arm in ("right", "control", "ideal")
    )
    for name in names:
        values = [float(c[name]) for c in cases if c[name] is not None]
        mean, se = mean_and_se(values)
        out[name] = {"mean": round(mean, 4), "se": round(se, 4), "n": len(values)}
    for arm in ("right", "control"):
        gains = [c[f"reward_{arm}"][1] - c[f"reward_{arm}"][0] for c in cases]
        mean, se = mean_and_se(gains)
        out[f"reward_gain_{arm}"] = {"mean": round(mean, 4), "se": round(se, 4)}
    return out


def ratio(summary: dict, arm: str) -> float:
    """Mean change outside the objects over mean change inside, for one arm (right, control, ideal)."""
    return summary[f"outside_{arm}"]["mean"] / max(summary[f"inside_{arm}"]["mean"], 1e-9)


def table(summaries: Sequence[dict]) -> str:
    def cell(entry: dict, digits: int = 2) -> str:
        return "—" if entry["n"] == 0 else f"{entry['mean']:.{digits}f} ± {entry['se']:.{digits}f}"

    lines = [
        f"{'family':<9} {'n':>3}  {'flip right':>12}  {'flip control':>12}  {'control hit':>12}  "
        f"{'reward gain r/c':>15}  {'outside chg':>11}  {'inside chg':>10}  {'out/in':>6}  {'ideal out/in':>12}"
    ]
    for s in summaries:
        if s["n"] == 0:
            lines.append(f"{s['family']:<9} {0:>3}  no usable case in {s['tried']} scenes")
            continue
        outside, inside = s["outside_right"]["mean"], s["inside_right"]["mean"]
        gains = f"{s['reward_gain_right']['mean']:+.2f}/{s['reward_gain_control']['mean']:+.2f}"
        lines.append(
            f"{s['family']:<9} {s['n']:>3}  {cell(s['flip_right']):>12}  {cell(s['flip_control']):>12}  "
            f"{cell(s['control_hit']):>12}  {gains:>15}  {outside:>11.4f}  {inside:>10.4f}  "
            f"{ratio(s, 'right'):>6.2f}  {ratio(s, 'ideal'):>12.2f}"
        )
    return "\n".join(lines)


def figure(results: Sequence[dict], path: Path) -> None:
    """Per case one row: before | toward the asked prompt | toward the control, each at its first, middle and last
    frame."""
    rows = []
    for result in results:
        for record, videos in list(zip(result["cases"], result.get("videos", [])))[:FIGURE_CASES]:
            picked = pick_frames(videos[0].shape[0], 3)
            gap = torch.ones(3, videos[0].shape[-2], 6)
            tiles = [torch.cat([v[i] for i in picked], dim=-1) for v in videos]
            strip = torch.cat([tiles[0], gap, tiles[1], gap, tiles[2]], dim=-1)[None]
            label = f"{result['family']}: asks '{record['asked'][:70]}'; control '{record['control'][:50]}'"
            note = (
                f"flip toward asked: {'yes' if record['flip_right'] else 'no'}\n"
                f"flip toward control: {'yes' if record['flip_control'] else 'no'}\n"
                f"change out/in: {record['outside_right']:.3f}/{record['inside_right']:.3f}"
            )
            rows.append(Row(strip, label, note))
    if rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        grid(rows, frames=1).save(path)


def run(
    models: Models,
    families: Sequence[str],
    cases: int,
    steps: int,
    lr: float,
    optimizer: str,
    seed: int,
) -> list[dict]:
    """Every family's raw result (cases with their decoded videos)."""
    return [measure_family(models, family, cases, steps, lr, optimizer, seed) for family in families]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critic", type=Path, default=None, help="toy critic folder (default: the shipped one)")
    parser.add_argument("--vae", type=Path, default=None, help="toy VAE folder (default: the shipped one)")
    parser.add_argument("--families", default=",".join(DEFAULT_FAMILIES), help=f"comma list of {', '.join(FAMILIES)}")
    parser.add_argument("--cases", type=int, default=4, help="usable cases per family")
    parser.add_argument("--steps", type=int, default=30, help="ascent steps")
    parser.add_argument("--lr", type=float, default=0.05, help="step size in normalised latent units (RMS per step)")
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="grad",
        help="grad: the gradient at unit RMS per video; sign: signed gradient; adam: Adam (see ascend)",
    )
    parser.add_argument("--augment", type=int, default=0, help="score the mean over N random views (0: off)")
    parser.add_argument("--seed", type=int, default=0, help=f"scene stream (seeds from {SEED_BASE:,})")
    parser.add_argument("--png", type=Path, default=None, help="write the before/after grid here")
    parser.add_argument("--json", type=Path, default=None, help="write every figure and case here")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"--families: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    torch.manual_seed(args.seed)
    wall, cpu = time.time(), time.process_time()
    models = load_models(args.critic or toy_critic_path(), args.vae or toy_vae_path(), args.augment)
    print(
        f"critic {models.describe['critic']} (frames {models.describe['critic_frames']}), "
        f"vae {models.describe['vae']}, {models.frames} frames per clip",
        flush=True,
    )
    results = run(models, families, args.cases, args.steps, args.lr, args.optimizer, args.seed)
    summaries = [summarize(r) for r in results]
    print(table(summaries))
    right = [c["flip_right"] for r in results for c in r["cases"]]
    control = [c["flip_control"] for r in results for c in r["cases"]]
    outside = [c["outside_right"] for r in results for c in r["cases"]]
    inside = [c["inside_right"] for r in results for c in r["cases"]]
    seconds = {"wall": round(time.time() - wall, 1), "cpu": round(time.process_time() - cpu, 1)}
    if right:
        print(
            f"flip right - flip control: {(sum(right) - sum(control)) / len(right):+.3f} over {len(right)} cases; "
            f"outside / inside change: {sum(outside) / max(sum(inside), 1e-9):.3f}"
        )
    print(f"{seconds['cpu']:.0f} CPU-s, {seconds['wall']:.0f} s wall")
    if args.png:
        figure(results, args.png)
        print(f"wrote {args.png}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "models": models.describe,
            "settings": {
                "cases": args.cases,
                "steps": args.steps,
                "lr": args.lr,
                "optimizer": args.optimizer,
                "seed": args.seed,
                "seed_base": SEED_BASE,
                "dilate": DILATE,
            },
            "summary": summaries,
            "cases": {r["family"]: r["cases"] for r in results},
            "seconds": seconds,
        }
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
