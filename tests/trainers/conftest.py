"""Tiny models and configs shared by the trainer tests: one critic per session, a fresh generator copy per run."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from drf.config import load_config
from tests.fixtures.wan import tiny_generator
from trainers.drf import DRFRunConfig

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "configs" / "tiny_drf.yaml"
TINY_GRPO_CONFIG = ROOT / "configs" / "tiny_grpo.yaml"
TINY_NFT_CONFIG = ROOT / "configs" / "tiny_nft.yaml"


@functools.cache
def shared_critic():
    from critics.config import CriticConfig
    from critics.registry import load_critic

    return load_critic(CriticConfig(family="qwen2_vl", tiny=True))


def tiny_cfg(output_dir: Path, *overrides: str) -> DRFRunConfig:
    """configs/tiny_drf.yaml with its prompt file made absolute, writing under ``output_dir``."""
    return load_config(
        TINY_CONFIG,
        DRFRunConfig,
        [
            f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}",
            f"logging.output_dir={output_dir}",
            "logging.report=false",
            *overrides,
        ],
    )


def tiny_grpo_cfg(output_dir: Path, *overrides: str):
    """configs/tiny_grpo.yaml at the shared tiny generator's size (9 frames), writing under ``output_dir``."""
    from trainers.grpo import GRPORunConfig

    return load_config(
        TINY_GRPO_CONFIG,
        GRPORunConfig,
        [
            f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}",
            f"logging.output_dir={output_dir}",
            "logging.report=false",
            "model.num_frames=9",
            *overrides,
        ],
    )


def wrap_critic(trainer, wrap) -> None:
    """Make the trainer's critic reward ask ``wrap(critic)`` instead (a crash or a poisoned score mid-run)."""
    for _, reward in trainer.rewards.entries:
        if reward.name == "critic":
            reward.critic = wrap(reward.critic)


def make_trainer(cfg, resume: str | None = None):
    """A trainer (by the config's recipe section) over copies of the session's tiny modules (the trainer adds a LoRA,
    so they must be fresh)."""
    from trainers.plugins import resolve
    from trainers.recipes import RECIPES

    section = next(name for name in RECIPES if hasattr(cfg, name))
    return resolve(RECIPES[section].trainer)(cfg, resume, generator=tiny_generator(fresh=True), critic=shared_critic())


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread for these tests: on a busy 2-core machine two OpenMP threads per process spin against each other
    (a 30-step run measured 15 s with one thread, over 4 minutes with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_cfg(tmp_path):
    return functools.partial(tiny_cfg, tmp_path)


@pytest.fixture
def grpo_cfg(tmp_path):
    return functools.partial(tiny_grpo_cfg, tmp_path)
