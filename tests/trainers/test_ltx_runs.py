"""DRF, GRPO and DiffusionNFT train a tiny LTX-Video model through the same seam as Wan: each run's exported LoRA
loads in stock ``LTXPipeline.load_lora_weights`` and changes its output, and a resumed run ends bit for bit where an
uninterrupted one does."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import LTXPipeline

from drf.config import load_config
from drf.models.ltx import LTXGenerator
from drf.models.tiny import build_tiny_ltx_components
from tests.trainers.conftest import ROOT, TINY_CONFIG, TINY_GRPO_CONFIG, TINY_NFT_CONFIG, shared_critic
from trainers.plugins import resolve
from trainers.recipes import RECIPES

# 9 frames (2 latent frames) at 32x64 (1x2 latent tokens): LTX-Video's 8n+1 frames and multiples of 32.
LTX = (
    "model.family=ltx",
    "model.tiny=ltx-tiny",
    "model.num_frames=9",
    "model.height=32",
    "model.width=64",
    "model.max_sequence_length=16",
    "rewards=[{name: critic}]",
)
CONFIGS = {"drf": TINY_CONFIG, "grpo": TINY_GRPO_CONFIG, "nft": TINY_NFT_CONFIG}


def ltx_trainer(recipe: str, tmp_path, *overrides: str, resume: str | None = None):
    recipe_cfg = RECIPES[recipe]
    cfg = load_config(
        CONFIGS[recipe],
        resolve(recipe_cfg.schema),
        [
            f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}",
            f"logging.output_dir={tmp_path}",
            "logging.report=false",
            "logging.sample_every=0",
            *LTX,
            *overrides,
        ],
    )
    return resolve(recipe_cfg.trainer)(cfg, resume, critic=shared_critic())


def _stock_latents(pipe: LTXPipeline, gen: LTXGenerator) -> torch.Tensor:
    latents = gen.init_latents(1, torch.Generator().manual_seed(0))
    return pipe(
        "a red cube on a checkered floor", latents=gen.pack(latents), num_inference_steps=3, guidance_scale=3.0,
        height=gen.height, width=gen.width, num_frames=gen.num_frames, max_sequence_length=16, output_type="latent",
    ).frames  # fmt: skip


@pytest.mark.parametrize("recipe", ["drf", "grpo", "nft"])
def test_each_recipe_trains_ltx_and_its_lora_loads_in_the_stock_pipeline(recipe, tmp_path):
    trainer = ltx_trainer(recipe, tmp_path, f"{recipe}.steps=2", f"{recipe}.learning_rate=0.05")
    assert isinstance(trainer.generator, LTXGenerator)
    before = {n: p.detach().clone() for n, p in trainer.transformer.named_parameters() if p.requires_grad}
    run = trainer.train()
    after = dict(trainer.transformer.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before), "no LoRA weight moved"
    lora = run / "lora" / "pytorch_lora_weights.safetensors"
    assert lora.is_file()

    pipe = LTXPipeline(**copy.deepcopy(build_tiny_ltx_components()))
    pipe.set_progress_bar_config(disable=True)
    base = _stock_latents(pipe, trainer.generator)
    pipe.load_lora_weights(run / "lora")
    assert (_stock_latents(pipe, trainer.generator) - base).abs().max() > 1e-6


def _trained(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.transformer.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("recipe", ["drf", "grpo", "nft"])
def test_a_resumed_ltx_run_ends_bit_for_bit_like_an_uninterrupted_one(recipe, tmp_path):
    settings = (f"{recipe}.checkpoint_every=1", f"{recipe}.export=false", f"{recipe}.learning_rate=0.05")
    straight = ltx_trainer(recipe, tmp_path, "name=straight", f"{recipe}.steps=2", *settings)
    straight.train()
    ltx_trainer(recipe, tmp_path, "name=resumed", f"{recipe}.steps=1", *settings).train()
    second = ltx_trainer(recipe, tmp_path, "name=resumed", f"{recipe}.steps=2", *settings, resume="latest")
    assert second.step == 1
    second.train()
    expected, got = _trained(straight), _trained(second)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_drf_trains_ltx_through_the_one_step_x0_window(tmp_path):
    x0 = ("sampling.grad_window.kind=x0", "sampling.grad_window.k=1")
    trainer = ltx_trainer("drf", tmp_path, "drf.steps=2", "drf.learning_rate=0.05", "drf.export=false", *x0)
    before = _trained(trainer)
    trainer.train()
    assert any(not torch.equal(before[n], p) for n, p in _trained(trainer).items()), "no LoRA weight moved"
