"""The KL and L2 regularisers compare against the frozen base model: zero while the LoRA is zero, positive after."""

from __future__ import annotations

import math

import pytest

from drf.logging import read_metrics
from tests.trainers.conftest import make_trainer

X0_WINDOW = ("sampling.grad_window.kind=x0", "sampling.grad_window.k=1", "sampling.grad_window.steps=[0,1,2]")


@pytest.mark.parametrize("window", [(), X0_WINDOW], ids=["random_k", "x0"])
def test_kl_and_l2_measure_distance_to_the_base_model(run_cfg, capsys, window):
    """With the x0 window the base model's x0 at the same step is the reference: against its finished chain the L2
    of the first step would not be 0."""
    trainer = make_trainer(
        run_cfg(
            *window,
            "drf.steps=3",
            "drf.gradient_accumulation=1",
            "drf.kl_weight=1.0",
            "drf.l2_weight=1.0",
            "drf.learning_rate=5e-2",
            "drf.warmup_steps=0",
            "drf.ema=false",
            "drf.export=false",
            "drf.checkpoint_every=0",
            "logging.sample_every=0",
            "sampling.guidance_scale=1.0",
        )
    )
    trainer.train()
    if window:
        assert "gradient through x0: one step per micro-batch drawn from steps [0, 1, 2]" in capsys.readouterr().out
    records = read_metrics(trainer.run_dir)
    # Step 1: LoRA B is initialised to zero, so the adapted model IS the base model.
    assert records[0]["kl"] == 0.0 and records[0]["l2"] == 0.0
    # After two updates the adapter differs from the base, and both distances see it.
    assert records[-1]["kl"] > 0 and records[-1]["l2"] > 0
    assert all(math.isfinite(r["loss"]) for r in records)
    # The loss is exactly -reward + 1.0 * kl + 1.0 * l2 (one micro-batch per step).
    last = records[-1]
    assert math.isclose(last["loss"], -last["reward/total"] + last["kl"] + last["l2"], rel_tol=1e-5)
