"""The toy-world models shipped with drf: where they live, and a check that they are the files the manifest records.

``drf/assets/toyworld/generator`` is a complete diffusers ``WanPipeline`` directory (transformer, VAE, UMT5 text encoder,
tokenizer, scheduler) and ``drf/assets/toyworld/critic`` a transformers Qwen2-VL directory, so both load through the
same ``from_pretrained`` paths as real models. ``manifest.json`` records, per model, every file's sha256 and size, the
command and seed that produced it, the training time and the measured metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drf.digest import sha256_file
from drf.errors import ModelLoadError
from drf.models.wan import WanGenerator
from drf.toyworld.scene import WORLD_FRAMES

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets" / "toyworld"
MANIFEST = "manifest.json"
GENERATOR_DIR = "generator"
CRITIC_DIR = "critic"
# Resumable training states inside an asset folder (ignored by git, removed when a model is written).
TRAIN_STATE_DIR = ".train"
# The video size the toy models are trained for.
HEIGHT = WIDTH = 64
NUM_FRAMES = WORLD_FRAMES


def _existing(relative: str, marker: str, what: str, root: Path | None) -> Path:
    path = (root or ASSETS_DIR) / relative
    if not (path / marker).is_file():
        raise ModelLoadError(
            f"the toy {what} is missing ({path / marker} not found); train it with `drf toyworld train` or reinstall drf"
        )
    return path


def toy_generator_path(root: Path | None = None) -> Path:
    """The shipped toy text-to-video ``WanPipeline`` directory (for ``WanGenerator.from_pretrained``)."""
    return _existing(GENERATOR_DIR, "model_index.json", "text-to-video model", root)


def toy_vae_path(root: Path | None = None) -> Path:
    """The toy VAE directory (``AutoencoderKLWan.from_pretrained``); it exists before a T2V model is trained on it."""
    return _existing(f"{GENERATOR_DIR}/vae", "config.json", "VAE", root)


def toy_critic_path(root: Path | None = None) -> Path:
    """The shipped toy critic directory (``critic.family: qwen2_vl``, ``critic.path`` = this)."""
    return _existing(CRITIC_DIR, "config.json", "critic", root)


def load_toy_generator(root: Path | None = None, **kwargs: Any):
    """The toy T2V model as a ``WanGenerator`` at its training size and text length (keyword arguments override,
    e.g. ``device``). The text length matters: Wan's cross-attention has no padding mask, so the model only behaves
    as trained with the number of (zero-padded) text tokens it was trained with."""
    options = {
        "height": HEIGHT,
        "width": WIDTH,
        "num_frames": NUM_FRAMES,
        "max_sequence_length": toy_text_length(root),
        **kwargs,
    }
    return WanGenerator.from_pretrained(str(toy_generator_path(root)), **options)


def toy_text_length(root: Path | None = None) -> int:
    """Text tokens the toy T2V model was trained with, as its manifest records (Wan's default 512 if unrecorded)."""
    t2v = load_manifest(root)["models"].get("t2v", {})
    return int(t2v.get("config", {}).get("max_sequence_length", 512))


def toy_critic_settings(root: Path | None = None) -> dict[str, Any]:
    """The critic settings (``CriticConfig`` fields: family, frames_as, min/max pixels) the toy critic was trained to
    score with, as its manifest records; scoring at another resolution feeds it inputs it never saw."""
    return dict(load_manifest(root)["models"].get("critic", {}).get("critic_config", {"family": "qwen2_vl"}))


def toy_critic_frames(root: Path | None = None) -> dict[str, Any]:
    """The frame selection (``FramesConfig`` fields) the toy critic was trained on, as its manifest records."""
    return dict(load_manifest(root)["models"].get("critic", {}).get("frames", {"policy": "all"}))


def load_manifest(root: Path | None = None) -> dict[str, Any]:
    path = (root or ASSETS_DIR) / MANIFEST
    if not path.is_file():
        return {"models": {}}
    with open(path) as f:
        return json.load(f)


def verify_manifest(root: Path | None = None) -> list[str]:
    """Problems found (empty when every shipped file matches its recorded sha256 and size and none is unrecorded)."""
    root = root or ASSETS_DIR
    manifest = load_manifest(root)
    problems: list[str] = []
    recorded: set[str] = set()
    for name, entry in manifest.get("models", {}).items():
        for relative, info in entry.get("files", {}).items():
            recorded.add(relative)
            path = root / relative
            if not path.is_file():
                problems.append(f"{name}: {relative} is missing")
            elif path.stat().st_size != info["bytes"]:
                problems.append(f"{name}: {relative} has {path.stat().st_size} bytes, manifest says {info['bytes']}")
            elif sha256_file(path) != info["sha256"]:
                problems.append(f"{name}: {relative} sha256 differs from the manifest")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(TRAIN_STATE_DIR + "/"):
            continue  # a training run in progress
        if relative != MANIFEST and relative not in recorded:
            problems.append(f"{relative} is not recorded in {MANIFEST}")
    return problems
