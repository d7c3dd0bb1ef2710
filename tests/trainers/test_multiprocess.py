"""Two data-parallel processes (torchrun on CPU, gloo): the run shares one question file, one tiny critic and one
set of checkpoints holding both processes' RNG streams, and counts both processes in the batch arithmetic."""

from __future__ import annotations

import json
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
        TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "drf", "train", str(TINY_CONFIG),
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


GATHER_SCRIPT = """
import json, sys, torch
from accelerate import Accelerator
from trainers.distributed import gather_rows
from trainers.advantages import group_advantages

acc = Accelerator(cpu=True)
rank = acc.process_index
grid = torch.tensor([[0.0, 1.0], [2.0, 2.5]]) * (1 + 9 * rank)  # rank 1's groups spread 10x wider
out = {}
for mode in ("global", "max_group"):
    out[mode] = group_advantages(grid, mode, 1e-3, population=gather_rows(grid, acc)).tolist()
json.dump(out, open(sys.argv[1] + f"/rank{rank}.json", "w"))
acc.wait_for_everyone()  # leave together: a rank that exits while the other still talks to it can abort it
torch.distributed.destroy_process_group()
"""


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="needs torchrun (installed with torch)")
def test_global_and_max_group_statistics_span_every_process(tmp_path):
    from trainers.advantages import group_advantages

    script = tmp_path / "gather.py"
    script.write_text(GATHER_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(ROOT)}
    command = [TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    grids = [torch.tensor([[0.0, 1.0], [2.0, 2.5]]) * (1 + 9 * rank) for rank in range(2)]
    both = torch.cat(grids)
    for rank, grid in enumerate(grids):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for mode in ("global", "max_group"):
            # What one process holding both ranks' groups computes for this rank's rows.
            expected = group_advantages(both, mode, 1e-3)[2 * rank : 2 * rank + 2]
            torch.testing.assert_close(torch.tensor(got[mode]), expected)
        # Rank 0's own groups are 10x narrower than rank 1's: without the gather its scale would be wrong.
        if rank == 0:
            assert not torch.allclose(expected, group_advantages(grid, mode, 1e-3))
