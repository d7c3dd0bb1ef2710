"""Train the shipped toy-world latent geometry model: render clips, encode them with the toy VAE, label them exactly
from the renderer and distil (``drf toyworld train geometry``)."""

from __future__ import annotations

import math
import pickle
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan
from torch import Tensor

from drf.device import resolve_device
from drf.digest import sha256_file
from drf.geometry.distill import (
    DistillConfig,
    GeometryLabels,
    distill,
    encode_latents,
    evaluate,
    evaluate_rewards,
    labels_from,
    latent_frame_indices,
)
from drf.geometry.lgm import SHIPPED_DIR, SHIPPED_LGMS, LatentGeometryModel, LGMConfig
from drf.geometry.output import GeometryOutput
from drf.models.tiny import preset
from drf.toyworld.assets import ASSETS_DIR as TOYWORLD_ASSETS
from drf.toyworld.assets import GENERATOR_DIR, load_manifest
from drf.toyworld.render import render
from drf.toyworld.scene import CAMERA_MOTIONS, WORLD_FRAMES, Scene, sample_scenes
from drf.toyworld.teacher import geometry_from_render
from drf.toyworld.train import manifest

ASSETS_DIR = SHIPPED_DIR
TOY_LGM = SHIPPED_LGMS["toyworld"]


def load_vae(path: str | Path | None = None, seed: int = 0) -> tuple[Any, str]:
    """The VAE whose latents the LGM reads, and where it came from.

    ``path``: a diffusers ``AutoencoderKLWan`` directory; default: the shipped toy generator's VAE when present,
    otherwise a seeded random ``wan-tiny`` VAE (fine for tests, not for shipped weights).
    """
    if path is None:
        shipped = TOYWORLD_ASSETS / GENERATOR_DIR / "vae"
        if (shipped / "config.json").is_file():
            path = shipped
    if path is not None:
        return AutoencoderKLWan.from_pretrained(str(path)).eval(), str(path)
    torch.manual_seed(seed)
    return AutoencoderKLWan(**preset("wan-tiny").vae).eval(), f"random wan-tiny VAE (seed {seed})"


def toyworld_dataset(
    scenes: Sequence[Any], vae: Any, grid: int, num_frames: int = WORLD_FRAMES, size: int = 64, batch: int = 8,
) -> tuple[Tensor, GeometryLabels]:
    """Latents [B,C,F,h,w] of rendered ``scenes`` and their exact labels on a ``grid x grid`` depth grid.

    Labels come from a second render at the grid's resolution (same field of view), so every label pixel is an exact
    ray sample rather than an average across depth edges.
    """
    frames_idx = latent_frame_indices(num_frames)
    latents, labels = [], []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start : start + batch]
        rgb = torch.stack([render(s, num_frames, size, size).rgb for s in chunk])
        latents.append(encode_latents(vae, rgb).cpu())
        geoms, surfaces = [], []
        for s in chunk:
            r = render(s, num_frames, grid, grid)
            geoms.append(geometry_from_render(r, [o.motion != "none" for o in s.objects], frames_idx))
            surfaces.append(r.valid[frames_idx][None])
        labels.append(labels_from(GeometryOutput.cat(geoms), torch.cat(surfaces)))
    return torch.cat(latents), GeometryLabels.cat(labels)


@dataclass
class ToyLGMConfig:
    """Data and training of the shipped toy-world latent geometry model."""

    train_videos: int = field(default=1500, metadata={"help": "Training clips (train split scenes)."})
    eval_videos: int = field(default=150, metadata={"help": "Held-out clips (eval split scenes)."})
    data_seed: int = field(default=11, metadata={"help": "Seed of the scene samplers."})
    num_frames: int = field(default=WORLD_FRAMES, metadata={"help": "Pixel frames per clip (4n+1; the world's)."})
    size: int = field(default=64, metadata={"help": "Rendered clip side in pixels."})
    vae_path: str = field(default="", metadata={"help": "VAE directory (empty: the shipped toy VAE, else random)."})
    jitter_share: float = field(
        default=0.5, metadata={"help": "Share of training clips whose camera shakes (hand-held jitter on the path)."}
    )
    max_jitter: float = field(
        default=0.05, metadata={"help": "Largest jitter (world units, CameraPath.jitter) of a shaking training clip."}
    )
    cache_dir: str = field(default="", metadata={"help": "Where to cache sampled scenes (empty: no cache)."})
    train: DistillConfig = field(
        default_factory=DistillConfig, metadata={"help": "Distillation: steps, batch, learning rate, seed, threads."}
    )


def _shaken(scenes: list[Scene], cfg: ToyLGMConfig) -> list[Scene]:
    """A seeded ``jitter_share`` of ``scenes`` with hand-held jitter up to ``max_jitter`` on their camera path.

    The world's own cameras move along constant-twist paths only; a model that never sees a shaking camera learns
    to snap any clip to the nearest clean path, and smoothness computed from it cannot see jitter in generated videos.
    """
    rng = random.Random(cfg.data_seed)
    shaken = []
    for scene in scenes:
        if rng.random() < cfg.jitter_share:
            camera = replace(scene.camera, jitter=rng.uniform(0.1, 1.0) * cfg.max_jitter, jitter_seed=rng.randrange(2**31))
            scene = replace(scene, camera=camera)
        shaken.append(scene)
    return shaken


def _scenes(cfg: ToyLGMConfig, split: str, count: int) -> list[Any]:
    """Scenes of a split (training scenes partly shaken, held-out ones on the clean camera paths); cached when asked."""
    cache = None
    if cfg.cache_dir:
        shake = f"-jitter{cfg.jitter_share}x{cfg.max_jitter}" if split == "train" else ""
        cache = Path(cfg.cache_dir) / f"scenes-all-cameras-{split}-{count}-{cfg.data_seed}-{cfg.num_frames}{shake}.pkl"
        if cache.is_file():
            return pickle.loads(cache.read_bytes())
    seed = cfg.data_seed + (0 if split == "train" else 1)
    # Every camera move the renderer knows, not just the sampled world's: camera geometry is what the model learns.
    scenes = sample_scenes(count, seed=seed, split=split, num_frames=cfg.num_frames, camera_motions=CAMERA_MOTIONS)
    if split == "train":
        scenes = _shaken(scenes, cfg)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(scenes))
    return scenes


def _repo_relative(source: str) -> str:
    """A path inside the repository as repo-relative text (manifests must not name this machine's folders)."""
    repo = Path(__file__).resolve().parents[3]
    try:
        return Path(source).resolve().relative_to(repo).as_posix()
    except ValueError:
        return source


def train_toy_lgm(
    out_dir: str | Path = ASSETS_DIR, cfg: ToyLGMConfig | None = None, model_config: Any = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Render toy-world clips, encode them with the toy VAE, distil an LGM from the exact labels, evaluate it on
    held-out scenes and write ``<out_dir>/toy_lgm`` plus its entry in ``<out_dir>/manifest.json``; returns the entry."""
    cfg = cfg or ToyLGMConfig()
    torch.set_num_threads(cfg.train.threads)
    started = time.perf_counter()
    vae, vae_source = load_vae(cfg.vae_path or None)
    vae_weights = next((p for p in Path(vae_source).glob("*.safetensors")), None) if Path(vae_source).is_dir() else None
    vae_sha = sha256_file(vae_weights) if vae_weights else None
    latent_side = cfg.size // int(getattr(vae.config, "scale_factor_spatial", 8))
    # Tokens stay 8x8 whatever the VAE's spatial factor, so the trunk's cost does not grow with the latent grid.
    model_config = model_config or LGMConfig(patch=max(1, latent_side // 8))
    grid = latent_side // model_config.patch * model_config.upsample
    train_lat, train_lab = toyworld_dataset(_scenes(cfg, "train", cfg.train_videos), vae, grid, cfg.num_frames, cfg.size)
    eval_scenes = _scenes(cfg, "eval", cfg.eval_videos)
    eval_lat, eval_lab = toyworld_dataset(eval_scenes, vae, grid, cfg.num_frames, cfg.size)
    eval_motions = [s.camera.motion for s in eval_scenes]
    data_seconds = time.perf_counter() - started
    if log:
        log(f"data: {len(train_lat)} train / {len(eval_lat)} eval clips in {data_seconds:.0f} s ({vae_source})")
    torch.manual_seed(cfg.train.seed)
    model = LatentGeometryModel(model_config)
    history = distill(model, train_lat, train_lab, cfg.train, log=log)
    model.cpu()
    metrics = evaluate(model, eval_lat, eval_lab, eval_motions)
    exact = evaluate_rewards(model, eval_lat, eval_lab)
    target = Path(out_dir) / TOY_LGM
    model.save_pretrained(target)
    info = {
        "what": "latent geometry model for the toy world: depth, pose relative to frame 0, focal, static mask "
                f"from toy-VAE latents {list(train_lat.shape[1:])} of {cfg.size}x{cfg.size}x{cfg.num_frames} clips "
                f"(world v2 scenes under all {len(CAMERA_MOTIONS)} camera moves, "
                f"{cfg.jitter_share:.0%} of training clips hand-held)",
        "vae": {"source": _repo_relative(vae_source), "weights_sha256": vae_sha},
        "command": "drf toyworld train geometry  (config below)",
        "config": asdict(cfg),
        "model_config": asdict(model_config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": f"{resolve_device()} ({torch.get_num_threads()} threads)",
        "train_seconds": round(history[-1]["seconds"], 1) if history else 0.0,
        "data_seconds": round(data_seconds, 1),
        "steps_done": int(history[-1]["step"]) if history else 0,
        "final_train_loss": history[-1]["loss"] if history else None,
        # NaN (e.g. a correlation with a constant) is not JSON: recorded as null.
        "heldout_metrics": {k: (None if math.isnan(v) else v) for k, v in {**metrics, **exact}.items()},
        "torch": torch.__version__,
    }
    manifest.record(Path(out_dir), TOY_LGM, target, info)
    if log:
        log("held-out: " + " ".join(f"{k}={v}" for k, v in info["heldout_metrics"].items()))
    return load_manifest(Path(out_dir))["models"][TOY_LGM]


def toy_lgm_path(root: str | Path | None = None) -> Path:
    """The shipped toy-world LGM directory (for ``LatentGeometryModel.from_pretrained``)."""
    return Path(root or ASSETS_DIR) / TOY_LGM
