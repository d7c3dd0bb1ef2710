"""The evaluation judge: an independent oracle scores every eval video next to the critic and is reported beside it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from drf.cli import main
from drf.errors import ConfigError
from drf.logging import read_metrics
from tests.trainers.conftest import ROOT, TINY_GRPO_CONFIG
from trainers.base import before_after
from trainers.evaluation import judge_metrics


def _qset(*aspects: str):
    return SimpleNamespace(questions=[SimpleNamespace(id=f"q{i}", aspect=a) for i, a in enumerate(aspects)])


def test_judge_metrics_average_the_measured_questions_per_aspect():
    verdict = {"scores": {"q0": 1, "q1": 0, "q2": 1}}  # q3 was not measurable: left out everywhere
    metrics = judge_metrics(verdict, _qset("alignment", "alignment", "temporal", "physics"))
    assert metrics == {"oracle/total": 2 / 3, "oracle/aspect/alignment": 0.5, "oracle/aspect/temporal": 1.0}
    assert judge_metrics({"scores": {}}, _qset("alignment")) == {}


def test_judge_metrics_carry_the_alignment_score_per_judge_aspect():
    verdict = {"scores": {"q0": 1}, "alignment": {"mean": 0.25, "by_aspect": {"object": 0.0, "color": 0.5}}}
    metrics = judge_metrics(verdict, _qset("alignment"))
    assert metrics["oracle/alignment/total"] == 0.25
    assert metrics["oracle/alignment/aspect/object"] == 0.0 and metrics["oracle/alignment/aspect/color"] == 0.5


def test_before_after_lists_the_oracle_after_the_critic():
    before = {"eval/reward/total": -1.0, "eval/oracle/total": 0.25, "eval/oracle/aspect/alignment": 0.5}
    after = {"eval/reward/total": -0.5, "eval/oracle/total": 0.75, "eval/oracle/aspect/alignment": 1.0}
    lines = before_after(before, after, 3)
    names = [line.split()[0] if not line.startswith("  oracle") else " ".join(line.split()[:2]) for line in lines[1:]]
    assert names == ["total", "oracle alignment", "oracle total"]
    assert "+0.7500 (+0.5000)" in lines[-1]


def test_unknown_judge_is_a_config_error(run_cfg):
    with pytest.raises(ConfigError, match="judge"):
        run_cfg("drf.judge=pixels")


def test_grpo_command_trains_with_the_toyworld_judge(tmp_path, capsys):
    code = main(
        ["train", str(TINY_GRPO_CONFIG)]
        + [
            arg
            for setting in (
                f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}",
                f"logging.output_dir={tmp_path}",
                "logging.report=false",
                "logging.sample_every=2",
                "grpo.steps=2",
                "grpo.judge=toyworld",
            )
            for arg in ("--set", setting)
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "grpo train: tiny_grpo" in printed and "3 videos per prompt = 6 videos per optimiser step" in printed
    run = tmp_path / "tiny_grpo"
    records = read_metrics(run)
    assert [r["step"] for r in records] == [0, 1, 2]
    for record in (records[0], records[-1]):
        assert "eval/reward/total" in record and "eval/oracle/total" in record
        assert any(k.startswith("eval/oracle/aspect/") for k in record)
    scores = json.loads((run / "samples" / "step-2" / "scores.json").read_text())
    keys = {"total", "alignment", "alignment_by_aspect", "critic_by_aspect", "scores"}
    assert all(set(video["oracle"]) == keys and video["oracle"]["scores"] for video in scores)
    assert "eval/hacking/alarms" in records[-1] and "eval/hacking/alarms" not in records[0]
    assert "  oracle total" in printed.split("held-out reward")[1]
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert (run / "checkpoints" / "step-2").is_dir()
