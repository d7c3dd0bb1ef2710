"""Prompt data: train and eval prompt files, and the order prompts are drawn in (a pure function of seed and
position, so a resumed run draws exactly what an uninterrupted one would)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from drf.errors import InputError


@dataclass
class PromptSplits:
    train: list[str]
    eval: list[str]
    where: dict[str, str] = field(default_factory=dict)  # prompt -> "file:line" of its first appearance


def _read_jsonl_prompts(path: Path) -> PromptSplits:
    splits = PromptSplits([], [])
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: invalid JSON ({err.msg}); write one object per line") from None
        if not isinstance(record, dict):
            raise InputError(f'{where}: expected an object like {{"prompt": "...", "split": "train"}}')
        prompt = record.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{where}: 'prompt' must be a non-empty string")
        split = record.get("split", "train")
        if split not in ("train", "eval"):
            raise InputError(f"{where}: 'split' is {split!r}; use 'train' or 'eval'")
        getattr(splits, split).append(prompt.strip())
        splits.where.setdefault(prompt.strip(), where)
    return splits


def read_prompts(path: str | Path) -> PromptSplits:
    """Prompts from a ``.txt`` file (one per line, ``#`` comments; all train) or ``.jsonl`` (``prompt``, ``split``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompts file {path} does not exist; give a .txt (one prompt a line) or .jsonl file")
    if path.suffix == ".jsonl":
        return _read_jsonl_prompts(path)
    if path.suffix != ".txt":
        raise InputError(f"prompts file {path}: unsupported type {path.suffix!r}; use .txt or .jsonl")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    kept = [(n, line) for n, line in enumerate(lines, start=1) if line and not line.startswith("#")]
    where: dict[str, str] = {}
    for n, line in kept:
        where.setdefault(line, f"{path}:{n}")
    return PromptSplits([line for _, line in kept], [], where)


def load_prompt_splits(train_file: str, eval_file: str) -> PromptSplits:
    """Train prompts from ``train_file``; eval prompts from its eval split plus every prompt of ``eval_file``."""
    splits = read_prompts(train_file)
    if eval_file:
        extra = read_prompts(eval_file)
        splits.eval.extend(extra.train + extra.eval)
        splits.where = extra.where | splits.where
    if not splits.train:
        raise InputError(f"prompts file {train_file} has no training prompts")
    return splits


def prompt_index(seed: int, position: int, num_prompts: int) -> int:
    """The prompt at ``position`` of an endless stream: a fresh seeded permutation of all prompts per epoch.

    A pure function of the position, so a resumed run reads exactly the prompts the uninterrupted run would have.
    """
    epoch, offset = divmod(position, num_prompts)
    order = torch.randperm(num_prompts, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return int(order[offset])


def stream_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, step, micro-batch, rank), stable across processes and resumes."""
    value = 0
    for part in parts:
        value = (value * 6_364_136_223_846_793_005 + part + 1_442_695_040_888_963_407) % (1 << 63)
    return value


def stream_noise(generator: Any, seeds: Sequence[int]) -> torch.Tensor:
    """Initial latents of a batch, video i drawn from its own stream ``seeds[i]``: a video's noise depends on its
    place in the global batch only, not on how the batch is split over micro-batches or processes."""
    return torch.cat([generator.init_latents(1, torch.Generator().manual_seed(seed)) for seed in seeds])
