"""GRPO: the policy ratio starts at 1, clipping bounds the update, flat groups carry no signal, runs resume exactly."""

from __future__ import annotations

import pytest
import torch

from drf.config import load_config
from drf.errors import ConfigError
from drf.logging import Timer, read_metrics
from tests.trainers.conftest import TINY_GRPO_CONFIG, make_trainer, wrap_critic
from tests.trainers.test_resume import Interrupt, StopAfter, _state
from trainers.advantages import group_advantages
from trainers.grpo import GRPORunConfig, clipped_policy_loss


def test_ratio_is_one_and_kl_zero_before_the_first_update(grpo_cfg):
    trainer = make_trainer(grpo_cfg("name=first", "grpo.kl_weight=0.5"))
    batch, _ = trainer.rollout(0, 0, Timer())
    assert len(batch.transitions) == trainer.cfg.grpo.window_size
    for transition in batch.transitions:
        _, stats = trainer.transition_loss(batch, transition)
        # Same weights, same inputs, same float32 arithmetic as when sampling: the recomputed log-prob is the stored
        # one to rounding (the policy batch may run the transformer with another kernel order).
        assert torch.allclose(stats["ratio"], torch.ones_like(stats["ratio"]), rtol=0, atol=1e-6)
        # LoRA B starts at zero, so policy and reference (adapter disabled) give the same step mean exactly.
        assert float(stats["kl"].abs().max()) == 0.0


@pytest.mark.parametrize("advantage, moved", [(1.0, 0.5), (-1.0, -0.5)])
def test_clipping_zeroes_gradients_outside_the_trust_region(advantage, moved):
    old = torch.zeros(4)
    eps = 0.1
    # Outside the region on the side the advantage favours: the clipped term wins and no gradient flows.
    new = (old + moved).requires_grad_(True)
    loss, ratio = clipped_policy_loss(new, old, torch.full((4,), advantage), eps)
    loss.backward()
    assert ((ratio - 1).abs() > eps).all()
    assert torch.equal(new.grad, torch.zeros(4))
    # Outside on the other side the surrogate is not clipped: the gradient pulls the ratio back.
    back = (old - moved).requires_grad_(True)
    clipped_policy_loss(back, old, torch.full((4,), advantage), eps)[0].backward()
    assert (back.grad.abs() > 0).all()
    # Inside the region the gradient is -A * ratio / n.
    inside = (old + 0.01 * moved).requires_grad_(True)
    _, r = clipped_policy_loss(inside, old, torch.full((4,), advantage), eps)
    clipped_policy_loss(inside, old, torch.full((4,), advantage), eps)[0].backward()
    assert torch.allclose(inside.grad, -advantage * r.detach() / 4)


@pytest.mark.parametrize("mode", ["group", "global", "max_group"])
def test_a_zero_variance_group_gives_zero_advantages_and_no_nan(mode):
    values = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.0, 1.0, 2.0, 3.0]])
    advantages = group_advantages(values, mode, floor=1e-12)
    assert torch.isfinite(advantages).all()
    assert torch.equal(advantages[0], torch.zeros(4))
    assert advantages[1].argmax() == 3 and advantages[1].sum().abs() < 1e-6
    # Running per-prompt statistics do not revive a flat group either.
    stats = group_advantages(values, mode, floor=1e-12, mean=torch.zeros(2, 1), std=torch.ones(2, 1))
    assert torch.equal(stats[0], torch.zeros(4))


def test_group_std_modes_normalise_as_named():
    values = torch.tensor([[0.0, 2.0], [0.0, 20.0]])
    # Group: each group to unit spread; max_group: both by the largest group std (10); global: by the batch std.
    assert torch.allclose(group_advantages(values, "group", 1e-6), torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))
    assert torch.allclose(group_advantages(values, "max_group", 1e-6), torch.tensor([[-0.1, 0.1], [-1.0, 1.0]]))
    std = values.std(unbiased=False)
    assert torch.allclose(group_advantages(values, "global", 1e-6), torch.tensor([[-1.0, 1.0], [-10.0, 10.0]]) / std)


def test_geometry_rewards_need_a_geometry_model(tmp_path):
    with pytest.raises(ConfigError, match=r"rewards\[1\]\.model geometry.smoothness needs a latent geometry model"):
        load_config(TINY_GRPO_CONFIG, GRPORunConfig, ["rewards=[{name: critic}, {name: geometry.smoothness}]"])


@pytest.mark.parametrize("key", ["reward_weights", "geometry_model"])
def test_an_old_grpo_reward_key_fails_showing_the_rewards_list(tmp_path, key):
    with pytest.raises(ConfigError, match=rf"'grpo.{key}' moved .*rewards: \[\{{name: critic"):
        load_config(TINY_GRPO_CONFIG, GRPORunConfig, [f"grpo.{key}=toyworld"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sampling.grad_window.k=3"], "sampling.grad_window.*read by DRF only"),
        (["sampling.grad_window.kind=x0"], "sampling.grad_window.*read by DRF only"),
        (["model.scheduler=unipc"], "model.scheduler.*not supported by GRPO"),
        (["grpo.sde_kind=cps", "grpo.sde_last_step=true"], "sde_last_step.*cps"),
        (["sampling.num_steps=4", "grpo.window_size=4"], "window_size.*<= 3.*sde_last_step"),
        (["grpo.window_schedule=random", "grpo.window_start=2"], "window_start is not read by window_schedule: random"),
        (["grpo.window_schedule=fixed", "grpo.window_start=10"], r"window_start must be <= 1 \(got 10\).*step 2 of"),
        (["grpo.window_schedule=progressive", "grpo.window_start=2"], r"grpo.window_start must be <= 1 \(got 2\)"),
        (["grpo.window_schedule=fixed", "grpo.window_shift_every=3"], "window_shift_every is read by .*progressive"),
    ],
)
def test_settings_grpo_would_ignore_or_break_on_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TINY_GRPO_CONFIG, GRPORunConfig, overrides)


def test_cps_trains_to_the_end_of_a_progressive_window_without_nan(grpo_cfg):
    """The reproduction of the CPS defect: a progressive window pushed to the end of the chain. The last step (std 0
    under CPS) stays out of the window, so every step is finite and none is skipped."""
    cfg = grpo_cfg("name=cps", "grpo.sde_kind=cps", "grpo.window_schedule=progressive", "grpo.window_start=1",
                   "grpo.steps=2", "grpo.export=false", "logging.sample_every=0")  # fmt: skip
    trainer = make_trainer(cfg)
    last = cfg.sampling.num_steps - 1
    assert last not in trainer.window(0).steps and last - 1 in trainer.window(0).steps
    trainer.train()
    records = read_metrics(trainer.run_dir)
    assert records and all(r.get("skipped", 0) == 0 for r in records)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)


# Everything that carries state across steps: progressive window, accumulation, per-prompt statistics, KL to the base,
# two updates per batch, geometry rewards from the toy LGM.
SETTINGS = (
    "grpo.steps=4",
    "grpo.checkpoint_every=2",
    "grpo.keep_last=5",
    "grpo.inner_epochs=2",
    "grpo.per_prompt_stats=true",
    "grpo.export=false",
    "logging.sample_every=0",
)


def test_grpo_run_resumes_bit_for_bit(grpo_cfg):
    straight = make_trainer(grpo_cfg("name=straight", *SETTINGS))
    straight.train()
    records = read_metrics(straight.run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for key in ("reward/total", "reward/critic", "reward/geometry.smoothness/std", "reward/geometry.dynamic_degree",
                "advantage/std", "policy/ratio", "policy/clip_fraction", "policy/approx_kl", "policy/kl", "grad_norm",
                "time/sampling", "time/decode", "time/rewards", "time/backward"):  # fmt: skip
        assert key in records[-1], key
    assert any(p.abs().max() > 0 for n, p in straight.transformer.named_parameters() if "lora_B" in n)

    first = make_trainer(grpo_cfg("name=resumed", *SETTINGS))
    wrap_critic(first, lambda critic: StopAfter(critic, calls=3 * 2))  # dies inside step 4, after checkpoint step-2
    with pytest.raises(Interrupt):
        first.train()
    second = make_trainer(grpo_cfg("name=resumed", *SETTINGS), resume="latest")
    assert second.step == 2
    assert second.prompt_stats.table  # the running statistics came back from the checkpoint
    second.train()
    expected, got = _state(straight), _state(second)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert straight.prompt_stats.table == second.prompt_stats.table
    assert [r["reward/total"] for r in read_metrics(second.run_dir)] == [r["reward/total"] for r in records]


def test_chunked_backward_gives_the_full_batch_gradient(grpo_cfg):
    def gradient(chunk: int) -> dict[str, torch.Tensor]:
        trainer = make_trainer(
            grpo_cfg(f"name=chunk{chunk}", f"grpo.videos_per_backward={chunk}", "grpo.kl_weight=0.5")
        )
        batches = [trainer.rollout(0, micro, Timer())[0] for micro in range(2)]
        with torch.no_grad():  # off the zero LoRA init, so every LoRA weight gets gradient and the KL is not 0
            for name, p in trainer.transformer.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=1e-2, generator=torch.Generator().manual_seed(1))
        grads = {}

        def capture(loss_finite: bool) -> tuple[bool, float]:
            grads.update({n: p.grad.clone() for n, p in trainer.transformer.named_parameters() if p.grad is not None})
            return True, 0.0

        trainer.apply_gradients = capture
        trainer.update(batches, Timer())
        return grads

    whole, single = gradient(0), gradient(1)
    assert whole.keys() == single.keys() and whole
    for name in whole:
        # The same per-video terms summed in another order (and the transformer run on 1 instead of 3 videos):
        # equal to float32 rounding, measured at a few 1e-6 of each gradient's largest entry.
        scale = float(whole[name].abs().max())
        assert scale > 0 and float((whole[name] - single[name]).abs().max()) <= 1e-4 * scale, name
