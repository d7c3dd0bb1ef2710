"""Two data-parallel processes (torchrun on CPU, gloo): the run shares one question file, one tiny critic and one
set of checkpoints holding both processes' RNG streams, and counts both processes in the batch arithmetic."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from drf.logging import read_metrics
from tests.trainers.conftest import ROOT, TINY_CONFIG

TORCHRUN = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="needs torchrun (installed with torch)")
def test_two_processes_train_one_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        TORCHRUN, "--nproc_per_node", "2", "-m", "drf", "train", str(TINY_CONFIG),
        "--set", f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}",
        "--set", f"logging.output_dir={tmp_path}",
        "--set", "drf.steps=2",
        "--set", "logging.sample_every=0",
        "--set", "drf.export=false",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "x 2 processes = 4 videos per optimiser step" in result.stdout
    assert result.stdout.count("done:") == 1  # only the main process reports
    run = tmp_path / "tiny_drf"
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    rng = torch.load(run / "checkpoints" / "step-2" / "rng.pt", weights_only=True)
    assert len(rng) == 2  # one entry per process, so each resumes its own streams
