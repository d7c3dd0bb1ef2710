"""The evaluation judge: an independent oracle scores every eval video next to the critic and is reported beside it."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from drf.cli import main
from drf.errors import ConfigError
from drf.logging import read_metrics
from drf.run_dir import RunDir
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


def _record(video: str, prompt: str, reward: float, alignment: float, p: float) -> dict:
    oracle = {"alignment": alignment, "alignment_by_aspect": {"color": alignment}, "critic_by_aspect": {"color": reward},
              "critic_p": p, "critic_p_by_aspect": {"color": p}}  # fmt: skip
    return {"video": video, "prompt": prompt, "reward": reward, "aspects": {"alignment": reward}, "oracle": oracle}


def test_before_after_pairs_videos_per_prompt_with_standard_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")  # wide enough that no measure's name wraps
    run = RunDir(tmp_path)
    # Two prompts, two seeds each; prompt b's seeds average to the same change as prompt a's.
    before = [_record("0.gif", "a", -1.0, 0.0, 0.5), _record("1.gif", "b", -1.0, 0.5, 0.5),
              _record("2.gif", "a", -1.0, 0.0, 0.5), _record("3.gif", "b", -1.0, 0.5, 0.5)]  # fmt: skip
    after = [_record("0.gif", "a", -0.5, 1.0, 0.9), _record("1.gif", "b", -0.5, 1.0, 0.9),
             _record("2.gif", "a", -0.5, 0.0, 0.9), _record("3.gif", "b", -0.5, 1.0, 0.9)]  # fmt: skip
    for step, records in ((0, before), (3, after)):
        run.samples(step).mkdir(parents=True)
        run.scores(step).write_text(json.dumps(records))
    lines = before_after(tmp_path, 3)
    assert lines[0].startswith("held-out reward, step 0 -> step 3:")
    assert lines[1].split() == [
        "held-out",
        "measure",
        "step",
        "0",
        "step",
        "3",
        "change",
        "±",
        "SE",
        "change/SE",
        "prompts",
    ]
    # columns: measure, step 0, step 3, change, its standard error, change/SE (blank when SE is 0), prompts
    by_name = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[3:])}
    assert by_name["critic reward total"] == ["-1.0000", "-0.5000", "+0.5000", "0.0000", "2"]
    # alignment: prompt a 0 -> 0.5, prompt b 0.5 -> 1.0: +0.5 each, no spread between prompts
    assert by_name["oracle alignment score total"] == ["+0.2500", "+0.7500", "+0.5000", "0.0000", "2"]
    assert "oracle alignment score color" in by_name and "critic reward on oracle color" in by_name
    # gap: critic p 0.5 -> 0.9 against the judge 0.25 -> 0.75 on average
    assert by_name["critic-oracle gap total"][:2] == ["+0.2500", "+0.1500"]
    assert before_after(tmp_path, 4) == []


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
    keys = {"total", "alignment", "alignment_by_aspect", "critic_by_aspect", "critic_p", "critic_p_by_aspect", "scores"}
    assert all(set(video["oracle"]) == keys and video["oracle"]["scores"] for video in scores)
    assert "eval/hacking/alarms" in records[-1] and "eval/hacking/alarms" not in records[0]
    assert "\noracle total (plain mean)" in printed.split("held-out reward")[1]  # a row of the before/after table
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert (run / "checkpoints" / "step-2").is_dir()


def test_the_applications_register_the_judge_and_the_report_when_their_commands_load():
    from drf.cli import load_commands
    from trainers.plugins import JUDGES, REPORTERS, resolve

    load_commands()
    from drf.report.builder import write_report
    from drf.toyworld.oracle import score

    assert resolve(JUDGES["toyworld"]) is score and resolve(REPORTERS["report"]) is write_report


def _rows(run_dir, before: list[dict], after: list[dict]) -> dict[str, list[str]]:
    run = RunDir(run_dir)
    for step, records in ((0, before), (3, after)):
        run.samples(step).mkdir(parents=True)
        run.scores(step).write_text(json.dumps(records))
    lines = before_after(run_dir, 3)
    return {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[3:])}


def _named(video: str, prompt: str, by_reward: dict[str, float]) -> dict:
    """A scores.json record as sample_and_score writes it without a critic or judge: the weighted total (weights 1
    here) and each reward by name."""
    return {"video": video, "prompt": prompt, "reward": sum(by_reward.values()), "by_reward": by_reward,
            "aspects": {}, "questions": {}}  # fmt: skip


def test_before_after_names_a_reward_that_is_not_the_critic(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    before = [_named("0.gif", "a", {"red": 0.1}), _named("1.gif", "b", {"red": 0.2})]
    after = [_named("0.gif", "a", {"red": 0.5}), _named("1.gif", "b", {"red": 0.4})]
    rows = _rows(tmp_path, before, after)
    assert rows["red"][:3] == ["+0.1500", "+0.4500", "+0.3000"]
    assert not any("critic" in name for name in rows)


def test_before_after_names_the_total_and_each_of_several_rewards(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    both = ("critic", "geometry.smoothness")
    before = [_named(f"{i}.gif", p, dict(zip(both, (-1.0, 0.5)))) for i, p in enumerate("ab")]
    after = [_named(f"{i}.gif", p, dict(zip(both, (-0.5, 0.25)))) for i, p in enumerate("ab")]
    rows = _rows(tmp_path, before, after)
    assert rows["reward total (critic + geometry.smoothness)"][:3] == ["-0.5000", "-0.2500", "+0.2500"]
    assert rows["critic reward"][:3] == ["-1.0000", "-0.5000", "+0.5000"]
    assert rows["geometry.smoothness"][:3] == ["+0.5000", "+0.2500", "-0.2500"]
    assert "critic reward total" not in rows
