"""Does ``geometry.smoothness`` rank camera paths the right way on the latent geometry model's poses?

On held-out toy-world scenes (a seed no model trained on) each smooth pan is compared with two variants of itself:
- frozen: frame 0 held for the whole clip (a generator that stops the camera); it must not beat the pan, so the
  figure is AUC(pan >= frozen) over all (pan, frozen) pairs, a tie counting as a success (exact poses score both 1);
- jittered: the same pan with seeded hand-held jitter (``CameraPath.jitter``); the pan must score higher, so the
  figure is AUC(pan > jittered), ties counting half (Mann-Whitney).
Two scores tie when they differ by less than TIE (float32 pose round-off leaves up to ~1e-4 on exact smooth paths).
Each AUC is printed with its n (pairs = scenes x scenes) and the paired share (same scene) beside it, on the LGM's
geometry (clips encoded with the VAE) and on exact geometry (the renderer's poses and depth).

Usage: python bench/geometry_smoothness.py [--scenes 60] [--jitter 0.02] [--vae DIR] [--lgm DIR] [--frames 9]
"""

import argparse
from dataclasses import replace

import torch

from drf.geometry.distill import encode_latents, latent_frame_indices
from drf.geometry.lgm import LatentGeometryModel
from drf.geometry.output import GeometryOutput
from drf.geometry.rewards import smoothness
from drf.toyworld.render import render
from drf.toyworld.scene import WORLD_FRAMES, sample_scenes
from drf.toyworld.teacher import geometry_from_render
from drf.toyworld.train.lgm import load_vae, toy_lgm_path

SEED = 9001  # the LGM trained on seeds 11 (train) and 12 (held-out figures); the T2V and critic on their own
TIE = 1e-3


def variant_clips(scene, frames: int, jitter: float, jitter_seed: int) -> dict[str, tuple]:
    """{variant: (rgb [T,3,64,64], exact geometry at the latent frames)} for a pan scene: as is, frozen, jittered."""
    idx = latent_frame_indices(frames)
    moving = [o.motion != "none" for o in scene.objects]
    smooth = render(scene, frames)
    shaky_scene = replace(scene, camera=replace(scene.camera, jitter=jitter, jitter_seed=jitter_seed))
    shaky = render(shaky_scene, frames)
    still = torch.zeros(frames, dtype=torch.long)
    return {
        "pan": (smooth.rgb, geometry_from_render(smooth, moving, idx)),
        "frozen": (smooth.rgb[still], geometry_from_render(smooth, moving, [0] * len(idx))),
        "jittered": (shaky.rgb, geometry_from_render(shaky, moving, idx)),
    }


def wins(diff: torch.Tensor, ties: float) -> float:
    """Share of score differences (better - worse) above TIE; a tie (|diff| < TIE) counts ``ties``."""
    tie = diff.abs() < TIE
    return float(((diff >= TIE).double() + ties * tie.double()).mean())


def auc(better: torch.Tensor, worse: torch.Tensor, ties: float) -> float:
    """Over all (better_i, worse_j) pairs."""
    return wins(better[:, None] - worse[None, :], ties)


def paired(better: torch.Tensor, worse: torch.Tensor, ties: float) -> float:
    """Over the pairs from the same scene."""
    return wins(better - worse, ties)


def report(source: str, scores: dict[str, torch.Tensor]) -> None:
    n = len(scores["pan"])
    means = " ".join(f"{k} {v.mean():.3f}" for k, v in scores.items())
    print(f"{source}: mean smoothness {means}")
    print(f"{source}: AUC(pan >= frozen) {auc(scores['pan'], scores['frozen'], 1.0):.3f} (n = {n}x{n} pairs), "
          f"paired {paired(scores['pan'], scores['frozen'], 1.0):.3f} (n = {n}); "
          f"ties {auc(scores['pan'], scores['frozen'], 1.0) - auc(scores['pan'], scores['frozen'], 0.0):.3f}")
    print(f"{source}: AUC(pan > jittered) {auc(scores['pan'], scores['jittered'], 0.5):.3f} (n = {n}x{n} pairs), "
          f"paired {paired(scores['pan'], scores['jittered'], 0.5):.3f} (n = {n})")


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--jitter", type=float, default=0.02, help="CameraPath.jitter of the jittered variant")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--frames", type=int, default=WORLD_FRAMES)
    parser.add_argument("--vae", default=None, help="VAE directory (default: the shipped toy VAE)")
    parser.add_argument("--lgm", default=None, help="LGM directory (default: the shipped toy LGM)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    vae, vae_source = load_vae(args.vae)
    lgm = LatentGeometryModel.from_pretrained(args.lgm or toy_lgm_path()).eval()
    scenes = sample_scenes(args.scenes, seed=args.seed, num_frames=args.frames, camera_motions=("pan_left", "pan_right"))
    clips = [variant_clips(s, args.frames, args.jitter, args.seed + i) for i, s in enumerate(scenes)]
    exact, learned = {}, {}
    for name in ("pan", "frozen", "jittered"):
        exact[name] = smoothness(GeometryOutput.cat([c[name][1] for c in clips]))
        rgb = torch.stack([c[name][0] for c in clips])
        latents = torch.cat([encode_latents(vae, rgb[i : i + 8]) for i in range(0, len(rgb), 8)])
        learned[name] = smoothness(lgm(latents))
    print(f"setup: {args.scenes} held-out pans (seed {args.seed}), {args.frames} frames, jitter {args.jitter}, "
          f"VAE {vae_source}, LGM {args.lgm or toy_lgm_path()}")
    report("exact poses", exact)
    report("LGM", learned)


if __name__ == "__main__":
    main()
