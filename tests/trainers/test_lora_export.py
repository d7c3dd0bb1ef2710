"""The exported LoRA loads into a stock diffusers WanPipeline and reproduces our generator with the LoRA active."""

from __future__ import annotations

import copy

import pytest
import torch

from drf.errors import ModelLoadError
from drf.grad_window import GradWindow
from drf.sampling import sample
from tests.fixtures.wan import SIZE, _components, tiny_generator
from trainers.config import TrainerConfig
from trainers.weights import setup_trainable


def test_exported_lora_loads_with_load_lora_weights(tmp_path):
    from diffusers import WanPipeline

    gen = tiny_generator(fresh=True)
    # alpha != r checks that the scale travels with the file (adapter metadata), not just the weights.
    cfg = TrainerConfig(
        lora_rank=4, lora_alpha=8.0, lora_target_modules=["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj"]
    )
    params = setup_trainable(gen.trainable_module(), cfg, "drf")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in params:  # a "trained" adapter: B is no longer zero
            p.add_(0.2 * torch.randn_like(p))
    gen.save_lora(tmp_path / "lora")

    pipe = WanPipeline(**copy.deepcopy(_components("wan-tiny", 0)))
    pipe.scheduler = type(gen.pipe.scheduler).from_config(gen.pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(tmp_path / "lora")

    prompt, steps, guidance = "a red cube on a checkered floor", 4, 4.0
    latents = gen.init_latents(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = sample(
            gen, gen.encode_prompts([prompt], guidance), GradWindow.none(steps), latents=latents.clone()
        ).latents
        theirs = pipe(
            prompt=prompt,
            num_inference_steps=steps,
            guidance_scale=guidance,
            latents=latents.clone(),
            output_type="latent",
            max_sequence_length=SIZE["max_sequence_length"],
            height=SIZE["height"],
            width=SIZE["width"],
            num_frames=SIZE["num_frames"],
        ).frames
        base = sample(
            tiny_generator(), gen.encode_prompts([prompt], guidance), GradWindow.none(steps), latents=latents.clone()
        ).latents
    assert (ours - base).abs().max() > 1e-2  # the adapter changes the output, so the comparison below means something
    # Same float32 ops in the same order, up to how peft and diffusers group the LoRA scaling: 1e-5 absolute.
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)

    reloaded = tiny_generator(fresh=True)
    reloaded.load_lora(tmp_path / "lora")  # the generator's own door back in
    with torch.no_grad():
        again = sample(
            reloaded, reloaded.encode_prompts([prompt], guidance), GradWindow.none(steps), latents=latents.clone()
        ).latents
    torch.testing.assert_close(again, ours, atol=1e-5, rtol=0)


def test_load_lora_names_a_missing_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        tiny_generator(fresh=True).load_lora(tmp_path / "nowhere")
