"""The chain equals diffusers' WanPipeline with gradients off, and carries gradient exactly where the window says."""

from __future__ import annotations

import pytest
import torch

from drf.grad_window import GradWindow
from drf.sampling import sample
from tests.fixtures.wan import SIZE, tiny_generator

PROMPTS = ["a small red cube on a checkered floor", "a blue sphere, the camera pans right"]


@pytest.mark.parametrize("scheduler", ["euler", "unipc"])
@pytest.mark.parametrize("guidance", [1.0, 4.0], ids=["no_cfg", "cfg"])
def test_chain_without_grad_reproduces_wan_pipeline(scheduler: str, guidance: float) -> None:
    gen = tiny_generator(scheduler)
    latents = gen.init_latents(2, torch.Generator().manual_seed(0))
    cond = gen.encode_prompts(PROMPTS, guidance)
    with torch.no_grad():
        ours = sample(gen, cond, GradWindow.none(6), latents=latents.clone())
        frames = gen.decode(ours.latents)
    common = dict(num_inference_steps=6, guidance_scale=guidance, max_sequence_length=SIZE["max_sequence_length"])
    size = dict(height=SIZE["height"], width=SIZE["width"], num_frames=SIZE["num_frames"])
    ref_latents = gen.pipe(PROMPTS, latents=latents.clone(), output_type="latent", **common, **size).frames
    ref_frames = gen.pipe(PROMPTS, latents=latents.clone(), output_type="pt", **common, **size).frames
    # Same modules, same operations in the same order: the promise is <= 1e-5, observed 0.0.
    assert (ours.latents - ref_latents).abs().max() <= 1e-5
    assert (frames - ref_frames).abs().max() <= 1e-5
    assert frames.shape == (2, 9, 3, 32, 32)


def test_partial_decode_equals_the_same_frames_of_a_full_decode() -> None:
    gen = tiny_generator()
    latents = gen.init_latents(1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = gen.decode(latents)
        part = gen.decode(latents, [0, 2, 5])
    torch.testing.assert_close(part, full[:, [0, 2, 5]], rtol=0, atol=1e-6)


def _trainable_copy(scheduler: str = "euler"):
    gen = tiny_generator(scheduler, fresh=True)
    gen.pipe.transformer.requires_grad_(True)
    return gen


def test_steps_outside_the_window_record_no_autograd_graph() -> None:
    gen = _trainable_copy()
    calls: list[tuple[bool, bool]] = []
    hook = gen.pipe.transformer.register_forward_hook(
        lambda m, i, out: calls.append((torch.is_grad_enabled(), out[0].requires_grad))
    )
    cond = gen.encode_prompts(PROMPTS[:1], 4.0)
    rollout = sample(gen, cond, GradWindow.last_k(2, 5), rng=torch.Generator().manual_seed(0))
    hook.remove()
    # Two transformer calls per step (conditional + unconditional): steps 0-2 without graph, steps 3-4 with.
    assert calls[:6] == [(False, False)] * 6
    assert all(requires_grad for _, requires_grad in calls[6:10]) and len(calls) == 10
    assert rollout.latents.requires_grad


def test_window_gradients_reach_weights_finite_and_nonzero() -> None:
    gen = _trainable_copy()
    cond = gen.encode_prompts(PROMPTS[:1], 4.0)
    rollout = sample(gen, cond, GradWindow.last_k(2, 4), rng=torch.Generator().manual_seed(0))
    gen.decode(rollout.latents, [0, 8]).mean().backward()
    grads = [p.grad for p in gen.pipe.transformer.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def _weight_grads(gen, window: GradWindow) -> list[torch.Tensor]:
    gen.pipe.transformer.zero_grad(set_to_none=True)
    cond = gen.encode_prompts(PROMPTS, 4.0)
    rollout = sample(gen, cond, window, rng=torch.Generator().manual_seed(0))
    (gen.decode(rollout.latents) ** 2).mean().backward()
    return [p.grad.clone() for p in gen.pipe.transformer.parameters()]


@pytest.mark.parametrize("scheduler", ["euler", "unipc"])
def test_checkpointing_changes_memory_not_gradients(scheduler: str) -> None:
    gen = _trainable_copy(scheduler)
    plain = _weight_grads(gen, GradWindow.explicit([1, 3], 4, checkpointing=False))
    ckpt = _weight_grads(gen, GradWindow.explicit([1, 3], 4, checkpointing=True))
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_detached_window_input_drops_only_the_input_jacobian() -> None:
    gen = _trainable_copy()
    # With a one-step window there is no earlier windowed step for the input path to reach: identical gradients.
    full = _weight_grads(gen, GradWindow.last_k(1, 3))
    detached = _weight_grads(gen, GradWindow.last_k(1, 3, detach_input=True))
    for a, b in zip(full, detached):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # With two steps the second step's input depends on the first step's velocity: gradients differ.
    full2 = _weight_grads(gen, GradWindow.last_k(2, 3))
    detached2 = _weight_grads(gen, GradWindow.last_k(2, 3, detach_input=True))
    assert any((a - b).abs().max() > 1e-6 for a, b in zip(full2, detached2))


def test_whole_chain_gradient_matches_float64_finite_differences() -> None:
    """Directional derivative of a decoded-video loss along a random weight direction, all steps in the window.

    The scheduler computes its update in float32 even for float64 modules, which puts a noise floor under finite
    differences; with the direction scaled to each weight's magnitude and eps=1e-3 the two agree to ~1e-3 relative
    (measured 3e-5 and 1e-3 on two prompts), so the tolerance is 1%. A wrong gradient misses by O(1): dropping the
    input Jacobian alone (``detach_input``) changes this derivative by >100%.
    """
    gen = tiny_generator(fresh=True)
    gen.pipe.to(torch.float64)
    gen.pipe.transformer.requires_grad_(True)
    cond = gen.encode_prompts(PROMPTS[:1], 4.0)
    latents = gen.init_latents(1, torch.Generator().manual_seed(0)).double()
    weights = torch.randn(1, 9, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    params = list(gen.pipe.transformer.parameters())
    rng = torch.Generator().manual_seed(3)
    direction = [torch.randn(p.shape, generator=rng, dtype=p.dtype) * p.detach().abs().mean() for p in params]

    def loss() -> torch.Tensor:
        rollout = sample(gen, cond, GradWindow.last_k(3, 3, checkpointing=False), latents=latents.clone())
        return (gen.decode(rollout.latents) * weights).sum()

    loss().backward()
    analytic = sum((p.grad * d).sum() for p, d in zip(params, direction)).item()
    eps = 1e-3
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for p, d in zip(params, direction):
                p.add_(sign * eps * d)
            values.append(loss().item())
            for p, d in zip(params, direction):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic - numeric) <= 1e-2 * abs(numeric), (analytic, numeric)


def test_wan22_two_experts_switch_at_the_boundary_like_the_pipeline() -> None:
    from diffusers import WanPipeline

    from drf.models.tiny import build_tiny_wan_components
    from drf.models.wan import WanGenerator

    components = build_tiny_wan_components("wan-tiny", seed=0)
    components["transformer_2"] = build_tiny_wan_components("wan-tiny", seed=5)["transformer"]
    gen = WanGenerator(WanPipeline(**components, boundary_ratio=0.6), scheduler="euler", shift=3.0, **SIZE)
    gen.pipe.set_progress_bar_config(disable=True)
    latents = gen.init_latents(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = sample(gen, gen.encode_prompts(PROMPTS[:1], 4.0), GradWindow.none(6), latents=latents.clone())
    size = {k: SIZE[k] for k in ("height", "width", "num_frames", "max_sequence_length")}
    ref = gen.pipe(
        PROMPTS[:1], latents=latents.clone(), num_inference_steps=6, guidance_scale=4.0, output_type="latent", **size
    ).frames
    assert (ours.latents - ref).abs().max() <= 1e-5
    with torch.no_grad():
        single = sample(
            tiny_generator(), tiny_generator().encode_prompts(PROMPTS[:1], 4.0), GradWindow.none(6), latents=latents
        )
    assert (single.latents - ours.latents).abs().max() > 1e-3  # the second expert really ran
