"""The KL and L2 regularisers compare against the frozen base model: zero while the LoRA is zero, positive after."""

from __future__ import annotations

import math

from drf.logging import read_metrics
from tests.trainers.conftest import make_trainer


def test_kl_and_l2_measure_distance_to_the_base_model(run_cfg):
    trainer = make_trainer(
        run_cfg(
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
    records = read_metrics(trainer.run_dir)
    # Step 1: LoRA B is initialised to zero, so the adapted model IS the base model.
    assert records[0]["kl"] == 0.0 and records[0]["l2"] == 0.0
    # After two updates the adapter differs from the base, and both distances see it.
    assert records[-1]["kl"] > 0 and records[-1]["l2"] > 0
    assert all(math.isfinite(r["loss"]) for r in records)
    # The loss is exactly -reward + 1.0 * kl + 1.0 * l2 (one micro-batch per step).
    last = records[-1]
    assert math.isclose(last["loss"], -last["reward/total"] + last["kl"] + last["l2"], rel_tol=1e-5)
