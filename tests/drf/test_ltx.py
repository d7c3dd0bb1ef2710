"""LTX-Video through the generator seam: drf's chain equals stock ``LTXPipeline``, gradients flow only through the
window and match finite differences, and a LoRA drf writes loads in stock ``LTXPipeline.load_lora_weights``."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import LTXPipeline

from drf.errors import InputError
from drf.grad_window import GradWindow
from drf.sampling import sample
from tests.fixtures.ltx import ltx_components, tiny_ltx
from trainers.config import TrainerConfig
from trainers.weights import setup_trainable

PROMPTS = ["a red cube on a checkered floor", "a blue sphere rolls left"]


def _stock(gen, latents: torch.Tensor, steps: int, guidance: float, output_type: str, pipe=None) -> torch.Tensor:
    """Stock ``LTXPipeline.__call__`` from the same noise (packed into its token layout) at the generator's size."""
    pipe = pipe or gen.pipe
    size = dict(height=gen.height, width=gen.width, num_frames=gen.num_frames, max_sequence_length=16)
    out = pipe(
        PROMPTS, latents=gen.pack(latents.clone()), num_inference_steps=steps, guidance_scale=guidance,
        output_type=output_type, **size,
    ).frames  # fmt: skip
    return gen.unpack(out) if output_type == "latent" else out


# (scheduler, steps, height, width, guidance): two schedulers and step counts, non-square sizes, CFG on and off.
CASES = [("euler", 3, 64, 96, 3.0), ("euler", 5, 64, 96, 1.0), ("unipc", 4, 32, 64, 3.0), ("unipc", 2, 96, 32, 1.0)]


@pytest.mark.parametrize(("scheduler", "steps", "height", "width", "guidance"), CASES)
def test_chain_and_decode_equal_stock_ltx_pipeline(scheduler, steps, height, width, guidance):
    gen = tiny_ltx(scheduler, height=height, width=width)
    latents = gen.init_latents(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = sample(gen, gen.encode_prompts(PROMPTS, guidance), GradWindow.none(steps), latents=latents.clone())
        frames = gen.decode(ours.latents)
    # Same float32 ops in the same order (the scheduler update is elementwise, so packing commutes with it): the
    # bound is float32 noise, 1e-5.
    assert (ours.latents - _stock(gen, latents, steps, guidance, "latent")).abs().max() <= 1e-5
    assert (frames - _stock(gen, latents, steps, guidance, "pt")).abs().max() <= 1e-5
    assert frames.shape == (2, gen.num_frames, 3, height, width)


def test_init_latents_are_the_pipelines_noise_unpacked():
    gen = tiny_ltx()
    ours = gen.init_latents(2, torch.Generator().manual_seed(3))
    packed = gen.pipe.prepare_latents(2, 8, gen.height, gen.width, gen.num_frames, torch.float32, gen.device,
                                      torch.Generator().manual_seed(3))  # fmt: skip
    assert ours.shape == (2, 8, 3, 2, 3) and torch.equal(gen.pack(ours), packed)


def test_sizes_outside_ltx_rules_fail_with_the_nearest_valid_values():
    with pytest.raises(InputError, match=r"num_frames=13 is not 8n\+1.*use 9 or 17"):
        tiny_ltx(num_frames=13)
    with pytest.raises(InputError, match=r"width=48 must be a positive multiple of 32; use 32 or 64"):
        tiny_ltx(width=48)


def test_gradient_flows_only_through_the_window():
    gen = tiny_ltx()
    calls = []
    hook = gen.pipe.transformer.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    latents = gen.init_latents(1, torch.Generator().manual_seed(1)).requires_grad_(True)
    out = sample(gen, gen.encode_prompts(PROMPTS[:1], 1.0), GradWindow.last_k(1, 4), latents=latents)
    hook.remove()
    assert calls == [False, False, False, True]  # 3 steps without gradient, the windowed one with
    assert out.latents.requires_grad


def test_gradient_through_chain_and_decode_matches_finite_differences():
    gen = tiny_ltx(fresh=True)
    cond = gen.encode_prompts(PROMPTS[:1], 3.0)
    latents = gen.init_latents(1, torch.Generator().manual_seed(1))
    weight = gen.pipe.transformer.proj_out.weight
    weight.requires_grad_(True)

    def loss() -> torch.Tensor:
        out = sample(gen, cond, GradWindow.last_k(3, 3), latents=latents.clone())  # every step: the full gradient
        return gen.decode(out.latents, [0, 8, 16]).mean()

    (grad,) = torch.autograd.grad(loss(), weight)
    direction = torch.randn_like(weight)
    eps = 1e-3
    with torch.no_grad():
        plus = (weight.add_(eps * direction), loss())[1]
        minus = (weight.sub_(2 * eps * direction), loss())[1]
        weight.add_(eps * direction)
    analytic, numeric = (grad * direction).sum().item(), ((plus - minus) / (2 * eps)).item()
    # float32 central differences at eps 1e-3 on a [1,3,3,64,96] mean: 2% relative.
    assert abs(analytic - numeric) <= 2e-2 * abs(numeric), (analytic, numeric)


def test_checkpointed_decode_gives_the_same_frames_and_gradients():
    gen = tiny_ltx(fresh=True)
    latents = torch.randn(1, 8, 3, 2, 3, generator=torch.Generator().manual_seed(2), requires_grad=True)
    results = []
    for on in (True, False):
        gen.pipe.vae.gradient_checkpointing = on
        for module in gen.pipe.vae.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = on
        frames = gen.decode(latents, [1, 5])
        (grad,) = torch.autograd.grad((frames * frames).sum(), latents)
        results.append((frames.detach(), grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6) and torch.allclose(
        results[0][1], results[1][1], atol=1e-6
    )
    assert results[0][0].shape == (1, 2, 3, 64, 96)


def test_exported_lora_loads_in_stock_ltx_pipeline_and_reproduces_the_generator(tmp_path):
    gen = tiny_ltx(fresh=True)
    cfg = TrainerConfig(lora_rank=4, lora_alpha=8.0, lora_target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    params = setup_trainable(gen.trainable_module(), cfg, "drf")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in params:  # a "trained" adapter: B is no longer zero
            p.add_(0.2 * torch.randn_like(p))
    gen.save_lora(tmp_path / "lora")

    pipe = LTXPipeline(**copy.deepcopy(ltx_components()))
    pipe.set_progress_bar_config(disable=True)
    latents = gen.init_latents(2, torch.Generator().manual_seed(0))
    before = _stock(gen, latents, 3, 3.0, "latent", pipe=pipe)
    pipe.load_lora_weights(tmp_path / "lora")
    after = _stock(gen, latents, 3, 3.0, "latent", pipe=pipe)
    with torch.no_grad():
        ours = sample(gen, gen.encode_prompts(PROMPTS, 3.0), GradWindow.none(3), latents=latents.clone()).latents
    assert (after - before).abs().max() > 1e-2  # the LoRA changes the stock pipeline's output
    # Same float32 ops, up to how peft and diffusers group the LoRA scaling: 1e-5 absolute.
    assert (ours - after).abs().max() <= 1e-5

    reloaded = tiny_ltx(fresh=True)
    reloaded.load_lora(tmp_path / "lora")
    with torch.no_grad():
        again = sample(reloaded, reloaded.encode_prompts(PROMPTS, 3.0), GradWindow.none(3), latents=latents.clone())
    assert (again.latents - ours).abs().max() <= 1e-5
