"""A NaN/Inf reward or gradient skips the step without touching weights or optimiser state; too many in a row stop."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from drf.checkpoint import TrainingDiverged
from drf.logging import read_metrics
from tests.trainers.conftest import make_trainer, wrap_critic

LIGHT = (
    "drf.gradient_accumulation=1",
    "sampling.guidance_scale=1.0",
    "drf.kl_weight=0",
    "drf.ema=false",
    "drf.export=false",
    "logging.sample_every=0",
    "drf.checkpoint_every=1",
    "drf.keep_last=10",
    "drf.learning_rate=1e-2",
)


class NaNGrad(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


class Poisoned:
    """The shared critic, with non-finite rewards (``mode`` "loss") or gradients ("grad") on chosen calls (1-based)."""

    def __init__(self, critic, mode: str, calls) -> None:
        self.critic, self.mode, self.calls, self.count = critic, mode, calls, 0

    def score(self, frames, question_sets):
        self.count += 1
        out = self.critic.score(frames, question_sets)
        if self.count not in self.calls:
            return out
        bad = out.rewards * float("nan") if self.mode == "loss" else NaNGrad.apply(out.rewards)
        return dataclasses.replace(out, rewards=bad)


@pytest.mark.parametrize("mode", ["loss", "grad"])
def test_non_finite_step_is_skipped_and_logged(run_cfg, mode):
    trainer = make_trainer(run_cfg(f"name={mode}", "drf.steps=3", *LIGHT))
    wrap_critic(trainer, lambda critic: Poisoned(critic, mode, calls={2}))
    trainer.train()

    records = read_metrics(trainer.run_dir)
    assert [r["skipped"] for r in records] == [0, 1, 0]
    ckpt = trainer.run_dir / "checkpoints"
    before, after = (
        load_file(ckpt / "step-1" / "trainable.safetensors"),
        load_file(ckpt / "step-2" / "trainable.safetensors"),
    )
    assert all(torch.equal(before[k], after[k]) for k in before)  # the skipped step changed no weight
    opt_before = torch.load(ckpt / "step-1" / "optimizer.pt", weights_only=True)
    opt_after = torch.load(ckpt / "step-2" / "optimizer.pt", weights_only=True)
    for index, state in opt_before["state"].items():
        assert all(torch.equal(state[k], opt_after["state"][index][k]) for k in state)  # nor the Adam moments/step
    final = load_file(ckpt / "step-3" / "trainable.safetensors")
    assert any(not torch.equal(after[k], final[k]) for k in after)  # and training went on afterwards


def test_consecutive_skips_stop_the_run_naming_the_last_good_checkpoint(run_cfg):
    trainer = make_trainer(run_cfg("name=diverge", "drf.steps=5", "drf.max_consecutive_skips=2", *LIGHT))
    wrap_critic(trainer, lambda critic: Poisoned(critic, "loss", calls=range(2, 100)))
    # Steps 2 and 3 are skipped; step-2 was written on a skipped step, so the run is sent back to step-1.
    with pytest.raises(TrainingDiverged, match=r"step 3: .* 2 consecutive steps.*last good checkpoint: \S*checkpoints/step-1 "):
        trainer.train()
