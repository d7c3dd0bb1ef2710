"""`drf train configs/tiny_drf.yaml` on tiny random models writes everything a run directory promises."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from drf.cli import main
from drf.logging import read_metrics
from tests.trainers.conftest import ROOT, TINY_CONFIG


def test_tiny_config_trains_and_writes_the_run_directory(tmp_path, capsys):
    code = main(
        [
            "train",
            str(TINY_CONFIG),
            "--set",
            f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}",
            "--set",
            f"logging.output_dir={tmp_path}",
            "--set",
            "drf.steps=2",
            "--set",
            "logging.sample_every=2",
            "--set",
            "drf.checkpoint_every=1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 videos per optimiser step" in printed  # the batch arithmetic is shown at start-up
    run = tmp_path / "tiny_drf"
    assert (run / "config.yaml").is_file()
    questions = [json.loads(line) for line in (run / "questions.jsonl").read_text().splitlines()]
    assert {q["prompt"] for q in questions} >= {"a red cube on a checkered floor", "a white cube behind a red sphere"}

    records = read_metrics(run)
    assert [r["step"] for r in records] == [0, 1, 2]  # step 0: the base model's eval samples
    assert (run / "samples" / "step-0" / "scores.json").is_file()
    for record in records[1:]:
        for key in ("reward/total", "grad_norm", "lr", "skipped", "time/step", "memory/peak_mb", "time/sampling",
                    "time/decode", "time/rewards", "time/backward", "kl"):  # fmt: skip
            assert key in record, key
        assert any(k.startswith("reward/aspect/") for k in record)
        assert any(k.startswith("reward/q/") for k in record)
    assert "eval/reward/total" in records[-1]

    # keep_last: 2 of the checkpoints at steps 1 and 2 both survive; each is complete.
    for step in (1, 2):
        ckpt = run / "checkpoints" / f"step-{step}"
        for name in ("COMPLETE", "trainable.safetensors", "optimizer.pt", "scheduler.pt", "ema.pt", "rng.pt",
                     "state.json", "config.yaml"):  # fmt: skip
            assert (ckpt / name).is_file(), (step, name)
    state = json.loads((run / "checkpoints" / "step-2" / "state.json").read_text())
    assert state["step"] == 2 and state["data_state"]["position"] == 4

    samples = run / "samples" / "step-2"
    assert len(list(samples.glob("*.gif"))) == 2  # eval_max_prompts of the held-out split
    scores = json.loads((samples / "scores.json").read_text())
    assert {s["prompt"] for s in scores} == {
        "a white cube behind a red sphere",
        "an orange cylinder, the camera orbits",
    }
    assert all(s["questions"] and s["aspects"] for s in scores)

    lora = load_file(run / "lora" / "pytorch_lora_weights.safetensors")
    assert lora and all(k.startswith("transformer.") for k in lora)
    report = (run / "report.html").read_text()
    # The report shows the latest eval video with every question it was scored on (max_videos=1).
    assert any(all(qid in report for qid in s["questions"]) for s in scores)


def test_train_refuses_to_overwrite_a_finished_run(run_cfg):
    from tests.trainers.conftest import make_trainer

    cfg = run_cfg("drf.steps=1", "logging.sample_every=0", "drf.export=false")
    make_trainer(cfg).train()
    with pytest.raises(Exception, match="already holds a run; pass --resume latest"):
        make_trainer(cfg)
