"""The one-step x0 window: the chain runs without gradient to one random step, the denoiser runs there once with
gradient, and the clean latent predicted there, x0 = x_t - sigma_t * v, is what gets decoded and scored."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from drf.errors import ConfigError
from drf.grad_window import GradWindow, GradWindowConfig, window_from_config
from drf.sampling import sample
from tests.fixtures.wan import tiny_generator

PROMPT = ["a small red cube on a checkered floor"]
NUM_STEPS = 5


def _cfg(**fields) -> SimpleNamespace:
    return SimpleNamespace(**{"kind": "x0", "k": 1, "steps": [], "seed": 3, "checkpointing": True,
                              "detach_input": False, **fields})  # fmt: skip


def test_x0_window_is_one_seeded_step_per_rollout_drawn_from_its_pool() -> None:
    windows = [window_from_config(_cfg(), 10, i) for i in range(40)]
    assert windows == [window_from_config(_cfg(), 10, i) for i in range(40)]  # reproducible per rollout index
    assert all(w.predict_x0 and len(w.steps) == 1 for w in windows)
    assert len({w.first for w in windows}) > 5  # varies across rollouts
    assert {window_from_config(_cfg(steps=[1, 2]), 10, i).first for i in range(40)} == {1, 2}
    assert {window_from_config(_cfg(), 10, i, among=[7, 8]).first for i in range(40)} == {7, 8}  # a trained expert's
    with pytest.raises(ConfigError, match=r"sampling.grad_window.steps \[1\] holds none of the steps"):
        window_from_config(_cfg(steps=[1]), 10, 0, among=[7, 8])
    with pytest.raises(ConfigError, match="exactly one step"):
        GradWindow(frozenset({1, 2}), 4, predict_x0=True)
    with pytest.raises(ConfigError, match="k is not read by kind x0"):
        GradWindowConfig(kind="x0", k=2).validate()


@pytest.mark.parametrize("scheduler", ["euler", "unipc"])
@pytest.mark.parametrize("step", [0, 2, NUM_STEPS - 1])
def test_x0_is_x_t_minus_sigma_t_v_in_the_schedulers_convention(scheduler: str, step: int) -> None:
    """Written out independently of drf: the schedulers' own x0 is sample - sigma * model_output (UniPC's
    ``convert_model_output`` for flow prediction; for Euler the deterministic step x_next = x_t + (sigma_next -
    sigma_t) v, so x0 = x_next - sigma_next * v, and Euler's timestep is sigma * num_train_timesteps (1000))."""
    gen = tiny_generator(scheduler)
    cond = gen.encode_prompts(PROMPT, 4.0)
    noise = gen.init_latents(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        rollout = sample(gen, cond, GradWindow(frozenset({step}), NUM_STEPS, predict_x0=True), latents=noise,
                         keep_trajectory=True)  # fmt: skip
        x_t = rollout.trajectory[step]
        timestep = rollout.timesteps[step]
        v = gen.velocity(x_t, timestep, cond)
    assert len(rollout.trajectory) == step + 2  # the chain stopped at the window's step: x_0..x_t, then x0
    if scheduler == "euler":  # UniPC rounds its timesteps to integers, so only Euler's give sigma back exactly
        torch.testing.assert_close(rollout.latents, x_t - float(timestep) / 1000 * v, rtol=0, atol=1e-5)
    reference = gen.scheduler(NUM_STEPS)
    if scheduler == "unipc":
        reference._step_index = step
        expected = reference.convert_model_output(v, sample=x_t)
    else:
        reference.set_begin_index(step)
        x_next = reference.step(v, reference.timesteps[step], x_t, return_dict=False)[0]
        expected = x_next - reference.sigmas[step + 1] * v
    torch.testing.assert_close(rollout.latents, expected, rtol=0, atol=1e-5)


def test_x0_at_the_last_euler_step_is_the_finished_chain() -> None:
    """Euler's last step goes to sigma = 0, which is the x0 prediction itself."""
    gen = tiny_generator()
    cond = gen.encode_prompts(PROMPT, 4.0)
    noise = gen.init_latents(1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        finished = sample(gen, cond, GradWindow.none(NUM_STEPS), latents=noise).latents
        x0 = sample(gen, cond, GradWindow(frozenset({NUM_STEPS - 1}), NUM_STEPS, predict_x0=True), latents=noise)
    torch.testing.assert_close(x0.latents, finished, rtol=0, atol=1e-6)


def _trainable():
    gen = tiny_generator(fresh=True)
    gen.pipe.transformer.requires_grad_(True)
    return gen


@pytest.mark.parametrize("checkpointing", [True, False])
def test_gradient_reaches_the_weights_through_exactly_one_transformer_call(checkpointing: bool) -> None:
    gen = _trainable()
    transformer = gen.pipe.transformer
    cond = gen.encode_prompts(PROMPT, 1.0)  # no CFG: one transformer call per step
    noise = gen.init_latents(1, torch.Generator().manual_seed(2))
    weights = torch.randn(1, 9, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    step = 2
    calls: list[bool] = []
    hook = transformer.register_forward_hook(lambda m, i, out: calls.append(out[0].requires_grad))
    window = GradWindow(frozenset({step}), NUM_STEPS, checkpointing=checkpointing, predict_x0=True)
    rollout = sample(gen, cond, window, latents=noise, keep_trajectory=True)
    hook.remove()
    assert calls == [False, False, True]  # steps 0 and 1 without a graph, step 2 with it, steps 3 and 4 never run
    (gen.decode(rollout.latents) * weights).sum().backward()
    ours = [p.grad.clone() for p in transformer.parameters()]
    assert sum(float(g.abs().sum()) for g in ours) > 0

    # The same loss written as one denoiser call on the detached x_t: the whole gradient is that call's.
    transformer.zero_grad(set_to_none=True)
    x_t = rollout.trajectory[step]
    t = rollout.timesteps[step]
    x0 = x_t - rollout.sigmas[step] * gen.velocity(x_t, t, cond)
    (gen.decode(x0) * weights).sum().backward()
    for a, b in zip(ours, (p.grad for p in transformer.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def _graph_bytes(gen, window: GradWindow, cond, noise) -> int:
    """Bytes of distinct tensors autograd holds for backward from sampling through decode: the memory a window costs
    on top of the models (outside checkpointed regions, which recompute one step's activations during backward)."""
    held: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        held[(t.untyped_storage().data_ptr(), t.storage_offset())] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        frames = gen.decode(sample(gen, cond, window, latents=noise).latents)
    frames.mean().backward()
    return sum(held.values())


@pytest.mark.parametrize("checkpointing", [True, False])
def test_x0_window_holds_no_more_memory_than_the_last_step_window(checkpointing: bool) -> None:
    gen = _trainable()
    cond = gen.encode_prompts(PROMPT, 4.0)
    noise = gen.init_latents(1, torch.Generator().manual_seed(4))
    last = _graph_bytes(gen, GradWindow.last_k(1, NUM_STEPS, checkpointing=checkpointing), cond, noise)
    x0 = _graph_bytes(gen, GradWindow(frozenset({1}), NUM_STEPS, checkpointing=checkpointing, predict_x0=True),
                      cond, noise)  # fmt: skip
    assert 0 < x0 <= last, (x0, last)
