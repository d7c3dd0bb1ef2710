"""Metrics file, non-finite values, resume truncation, TensorBoard fallback, progress bar, timer, memory."""

from __future__ import annotations

import json
import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import drf.logging as drf_logging
from drf.errors import InputError
from drf.logging import MetricsLogger, Timer, peak_memory_mb, progress, read_metrics


def test_lines_parse_back_with_tensors_as_numbers(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(1, {"loss": torch.tensor(0.5), "reward/total": 0.25, "n": np.int64(3), "phase": "warmup"})
        logger.log(2, {"loss": torch.tensor([1.5]), "flag": True})
        # Flushed per line: readable before the logger closes.
        assert len(read_metrics(tmp_path)) == 2
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["loss"] == 0.5 and records[0]["n"] == 3 and records[0]["phase"] == "warmup"
    assert records[1]["loss"] == 1.5 and records[1]["flag"] is True
    assert all(r["time"] > 0 for r in records)


def test_non_finite_values_are_written_as_visible_strings_and_read_back_as_floats(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(1, {"loss": float("nan"), "grad_norm": torch.tensor(float("inf")), "low": -math.inf})
    line = (tmp_path / "metrics.jsonl").read_text().strip()
    raw = json.loads(line)  # strict JSON: no bare NaN/Infinity tokens
    assert (raw["loss"], raw["grad_norm"], raw["low"]) == ("nan", "inf", "-inf")
    (record,) = read_metrics(tmp_path)
    assert math.isnan(record["loss"]) and record["grad_norm"] == math.inf and record["low"] == -math.inf


def test_non_scalar_tensor_is_refused_with_its_name(tmp_path):
    with MetricsLogger(tmp_path) as logger, pytest.raises(ValueError, match=r"metric 'frames' is a tensor of shape"):
        logger.log(1, {"frames": torch.zeros(2, 3)})


def test_resume_drops_lines_logged_after_the_checkpoint(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        for step in range(1, 6):
            logger.log(step, {"loss": float(step)})
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 6, "lo')  # the interrupted run died mid-line
    with MetricsLogger(tmp_path, resume_step=3) as logger:
        logger.log(4, {"loss": 40.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(InputError, match=r"metrics.jsonl:2: not a JSON metrics line"):
        read_metrics(tmp_path)


def test_only_the_main_process_writes(tmp_path):
    worker = SimpleNamespace(is_main_process=False)
    with MetricsLogger(tmp_path, accelerator=worker) as logger:
        logger.log(1, {"loss": 1.0})
    assert not (tmp_path / "metrics.jsonl").exists()


def test_missing_tensorboard_warns_once_and_continues(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(drf_logging, "tracker_available", lambda name: False)
    with caplog.at_level(logging.WARNING, logger="drf.logging"), MetricsLogger(tmp_path, trackers=["tensorboard"]) as logger:
        logger.log(1, {"loss": 1.0})
        logger.log(2, {"loss": 2.0})
    assert len([r for r in caplog.records if "tensorboard is not installed" in r.message]) == 1
    assert len(read_metrics(tmp_path)) == 2


def test_tensorboard_tracker_receives_metrics_as_floats(tmp_path, monkeypatch):
    logged = []
    tracker = SimpleNamespace(log=lambda values, step: logged.append((step, values)), finish=lambda: None)
    monkeypatch.setattr(MetricsLogger, "_start_tracker", staticmethod(lambda *_: tracker))
    with MetricsLogger(tmp_path, trackers=["tensorboard"]) as logger:
        logger.log(7, {"loss": torch.tensor(0.5), "bad": float("nan")})
    ((step, values),) = logged
    assert step == 7 and values["loss"] == 0.5 and math.isnan(values["bad"]) and "time" not in values


def test_wandb_offline_receives_metrics_and_eval_videos(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from drf.video_io import write_video

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    video = write_video(tmp_path / "samples" / "000_a_red_cube.gif", torch.rand(5, 3, 16, 16))
    with MetricsLogger(tmp_path, trackers=["wandb"], project_name="drf-test") as logger:
        logger.log(1, {"loss": 0.5})
        logger.log_videos(1, video.parent)
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(run.glob("*.wandb")) and list(run.rglob("*000_a_red_cube*.gif"))


def test_timer_accumulates_per_phase():
    ticks = iter([0.0, 1.0, 1.0, 3.5, 10.0, 10.25])
    timer = Timer(clock=lambda: next(ticks))
    with timer("sampling"):
        pass
    with timer("sampling"):
        pass
    with timer("backward"):
        pass
    assert timer.metrics() == {"time/sampling": 3.5, "time/backward": 0.25}
    assert timer.counts == {"sampling": 2, "backward": 1}
    timer.reset()
    assert timer.metrics(prefix="t") == {}


def test_timer_charges_a_phase_that_raises():
    ticks = iter([0.0, 2.0])
    timer = Timer(clock=lambda: next(ticks))
    with pytest.raises(RuntimeError), timer("decode"):
        raise RuntimeError("boom")
    assert timer.totals["decode"] == 2.0


def test_progress_is_silent_off_a_terminal_and_tracks_steps(capsys):
    with progress(10, "train", initial=2) as bar:  # pytest's stderr is not a TTY
        bar.update(3, reward=torch.tensor(-0.5), lr=1e-3)
        bar.update(5, reward=-0.25)
        assert bar.step == 5
    assert capsys.readouterr().err == ""


def test_peak_memory_is_positive_on_cpu():
    assert peak_memory_mb("cpu") > 1.0  # a Python process with torch loaded holds well over 1 MiB
