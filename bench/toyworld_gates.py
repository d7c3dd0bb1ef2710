"""The toy world's gates, measured on scenes that no training run or test draws (fresh eval-split seeds).

1. Oracle alignment: renders of the prompt, a uniform grey video, uniform noise and a render of a different scene,
   each scored against the prompt's questions (>= 300 scenes).
2. VAE: oracle alignment of round trips against the renders themselves, per colour and per shape, and PSNR over the
   frame and over object pixels (>= 100 clips).
3. T2V: samples of the shipped model with the demo's sampling settings on held-out prompts x seeds: object present,
   oracle alignment with its standard error, own prompt minus other prompts' questions, per aspect.
4. Critic: accuracy and paired AUC per question family on held-out renders and their one-change twins, p(yes) on a
   grey video, and agreement with the oracle on samples of the T2V model (``drf.toyworld.train.critic_eval``).

Prints one line per figure, writes them all to docs/toyworld_gates.json and the model gates into the toy-world asset
manifest (``gates`` of the vae, t2v and critic entries). Run with one thread per process when anything else is running
(``OMP_NUM_THREADS=1``). ``--only oracle,vae,t2v,critic`` picks parts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from drf.stats import mean_and_se
from drf.toyworld import oracle
from drf.toyworld.alignment import alignment_summary, found_by
from drf.toyworld.train.data import clips

ORACLE_SEED, VAE_SEED, T2V_SEED = 777, 778, 779
OUT = Path(__file__).resolve().parents[1] / "docs" / "toyworld_gates.json"


def _summary_line(name: str, values: list[float]) -> dict[str, float]:
    mean, se = mean_and_se(values)
    print(f"{name:<34} {mean:.4f} ± {se:.4f}  (n={len(values)})", flush=True)
    return {"mean": round(mean, 4), "se": round(se, 4), "n": len(values)}


def oracle_gates(scenes: int) -> dict:
    from prompts.registry import decompose

    data = clips(scenes, ORACLE_SEED, "eval")
    gen = torch.Generator().manual_seed(ORACLE_SEED)
    results: dict[str, list[float]] = {"renders": [], "grey": [], "noise": [], "other_scene": []}
    for i in range(len(data)):
        questions = list(decompose(data.prompts[i]))
        video = data.frames(i)
        videos = {
            "renders": video,
            "grey": torch.full_like(video, 0.5),
            "noise": torch.rand(video.shape, generator=gen),
            "other_scene": data.frames((i + 1) % len(data)),
        }
        for name, v in videos.items():
            results[name].append(oracle.alignment(oracle.analyze(v), questions)["mean"])
    return {name: _summary_line(f"oracle alignment: {name}", values) for name, values in results.items()}


def vae_gates(count: int, root: Path | None) -> dict:
    from diffusers import AutoencoderKLWan

    from drf.toyworld.assets import toy_vae_path
    from drf.toyworld.train.vae import evaluate_vae

    vae = AutoencoderKLWan.from_pretrained(toy_vae_path(root)).eval()
    metrics = evaluate_vae(vae, clips(count, VAE_SEED, "eval"), torch.device("cpu"))
    for key in ("alignment_renders", "alignment_round_trips", "psnr_db", "psnr_objects_db"):
        print(f"vae {key:<30} {metrics[key]}", flush=True)
    for key in ("found_by_color", "found_by_shape"):
        renders, trips = metrics[key]["renders"], metrics[key]["round_trips"]
        for name in renders:
            ratio = trips.get(name, 0.0) / max(renders[name], 1e-9)
            print(f"vae {key} {name:<12} render {renders[name]:.3f} trip {trips.get(name, 0):.3f} ({ratio:.3f}x)")
    return metrics


def t2v_gates(prompts: int, seeds: int, root: Path | None) -> dict:
    from drf.toyworld.assets import load_toy_generator
    from drf.toyworld.train.t2v import T2VTrainConfig, sample_videos

    settings = T2VTrainConfig()  # the demo's sampling settings: 12 Euler steps, guidance 4
    data = clips(prompts, T2V_SEED, "eval")
    generator = load_toy_generator(root)
    facts, all_prompts = [], []
    for seed in range(seeds):
        videos = sample_videos(generator, data.prompts, settings.eval_steps, settings.guidance, T2V_SEED + 100 * seed)
        facts += [oracle.analyze(v) for v in videos]
        all_prompts += data.prompts
    other_prompts = [all_prompts[(i + 1) % len(all_prompts)] for i in range(len(all_prompts))]
    own, other = alignment_summary(facts, all_prompts), alignment_summary(facts, other_prompts)
    print(f"t2v object present                 {own['object_present']:.4f}")
    print(f"t2v alignment                      {own['alignment']:.4f} ± {own['alignment_se']:.4f} (n={own['videos']})")
    print(f"t2v other prompts' questions       {other['alignment']:.4f} ± {other['alignment_se']:.4f}")
    print(f"t2v own minus other                {own['alignment'] - other['alignment']:.4f}")
    for aspect, value in own["by_aspect"].items():
        print(f"t2v aspect {aspect:<23} {value:.3f}")
    found = found_by(facts, all_prompts, "color")
    print("t2v objects found by colour       ", found)
    return {
        "samples": own,
        "samples_vs_other_prompts": other,
        "own_minus_other": round(own["alignment"] - other["alignment"], 4),
        "found_by_color": found,
        "prompts": prompts,
        "seeds": seeds,
        "sampling": {"steps": settings.eval_steps, "guidance": settings.guidance},
    }


def critic_gates(renders: int, prompts: int, root: Path | None) -> dict:
    from critics.config import CriticConfig
    from critics.registry import load_critic
    from drf.toyworld.assets import ASSETS_DIR, toy_critic_path, toy_critic_settings
    from drf.toyworld.train.critic import CriticTrainConfig
    from drf.toyworld.train.critic_eval import evaluate_critic

    # The eval seed of the critic's own training-time gates (its T2V samples use the next one).
    seed = CriticTrainConfig().eval_seed
    critic = load_critic(CriticConfig(path=str(toy_critic_path(root)), **toy_critic_settings(root)))
    metrics = evaluate_critic(critic, root or ASSETS_DIR, renders, seed, prompts)
    for table in ("accuracy", "paired_auc", "agreement_with_oracle_t2v"):
        for family, row in metrics[table].items():
            print(f"critic {table:<26} {family:<20} {row['mean']:.4f} ± {row['se']:.4f} (n={row['n']})", flush=True)
    print(f"critic grey video max p(yes)       {metrics['grey_video']['max']:.4f}")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="oracle,vae,t2v,critic")
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--vae-clips", type=int, default=120)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--critic-renders", type=int, default=300)
    parser.add_argument("--root", type=Path, default=None,
                        help="Asset folder of the models to gate (default: the shipped drf/assets/toyworld).")
    parser.add_argument("--json", type=Path, default=OUT, help="Where the figures go (default: %(default)s).")
    args = parser.parse_args()
    out = args.json
    results = json.loads(out.read_text()) if out.is_file() else {}
    parts = {"oracle": lambda: oracle_gates(args.scenes), "vae": lambda: vae_gates(args.vae_clips, args.root),
             "t2v": lambda: t2v_gates(args.prompts, args.seeds, args.root),
             "critic": lambda: critic_gates(args.critic_renders, args.prompts, args.root)}
    for name in args.only.split(","):
        start = time.perf_counter()
        results[name] = parts[name]()
        results[name + "_seconds"] = round(time.perf_counter() - start, 1)
        out.write_text(json.dumps(results, indent=1) + "\n")
        if name in ("vae", "t2v", "critic"):
            _record_in_manifest(name, results[name], args.root)
    print(f"wrote {out}")


def _record_in_manifest(model: str, figures: dict, root: Path | None) -> None:
    """The gate figures beside the model's own training record (the manifest's file hashes are unaffected)."""
    from drf.toyworld.assets import ASSETS_DIR
    from drf.toyworld.train.manifest import set_fields

    seed = {"vae": VAE_SEED, "t2v": T2V_SEED}.get(model, figures.get("eval_seed"))
    gates = {"command": f"python bench/toyworld_gates.py --only {model}", "eval_split_seed": seed, **figures}
    set_fields(root or ASSETS_DIR, model, gates=gates)


if __name__ == "__main__":
    main()
