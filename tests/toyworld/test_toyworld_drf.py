"""`make demo`'s run, shortened: DRF on the shipped toy models with the pixel oracle as judge, and the toy configs
agree with what the shipped models were trained with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drf.cli import main
from drf.commands import resolve_schema
from drf.config import load_config
from drf.logging import read_metrics
from drf.toyworld.assets import toy_critic_frames, toy_critic_settings, toy_text_length

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [ROOT / "configs" / f"toyworld_{recipe}.yaml" for recipe in ("drf", "grpo", "nft")]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_toy_configs_use_the_settings_the_toy_models_were_trained_with(path):
    # Wan's cross-attention has no padding mask: another text length feeds the model padding it never saw; the
    # critic only knows the input resolution it was trained at.
    cfg = load_config(str(path), resolve_schema(str(path)), [])
    assert cfg.model.max_sequence_length == toy_text_length()
    for key, value in toy_critic_settings().items():
        assert getattr(cfg.critic, key) == value, key
    for key, value in toy_critic_frames().items():
        assert getattr(cfg.sampling.frames, key) == value, f"sampling.frames.{key}"
    assert (ROOT / cfg.model.path / "model_index.json").is_file() and (ROOT / cfg.critic.path / "config.json").is_file()


def test_three_step_toyworld_drf_run_is_judged_by_the_oracle(tmp_path, capsys, one_thread, monkeypatch):
    monkeypatch.chdir(ROOT)  # the config names the shipped models relative to the repository
    code = main(
        [
            "train",
            str(CONFIGS[0]),
            "--set",
            f"logging.output_dir={tmp_path}",
            "--set",
            "drf.steps=3",
            "--set",
            "drf.prompts_per_step=1",
            "--set",
            "drf.eval_max_prompts=1",
            "--set",
            "drf.eval_seeds=1",
            "--set",
            "logging.sample_every=3",
            "--set",
            "logging.report=false",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "oracle total" in printed and "held-out reward, step 0 -> step 3" in printed
    assert "oracle alignment score total" in printed and "oracle alignment score object" in printed
    run = tmp_path / "toyworld_drf"
    records = read_metrics(run)
    assert [r["step"] for r in records if "eval/oracle/total" in r] == [0, 3]
    for record in records:
        if "eval/oracle/total" in record:
            assert 0.0 <= record["eval/oracle/total"] <= 1.0
            assert 0.0 <= record["eval/oracle/alignment/total"] <= 1.0
            assert "eval/oracle/alignment/aspect/object" in record
    scores = json.loads((run / "samples" / "step-3" / "scores.json").read_text())
    assert 0.0 <= scores[0]["oracle"]["alignment"] <= 1.0 and "object" in scores[0]["oracle"]["alignment_by_aspect"]
    scored = json.loads((run / "samples" / "step-3" / "scores.json").read_text())
    assert len(scored) == 1 and scored[0]["prompt"].endswith(("static", "left", "right", "in", "out"))
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()
