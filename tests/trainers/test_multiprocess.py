"""Two data-parallel processes (torchrun on CPU, gloo): the run shares one question file, one tiny critic and one
set of checkpoints holding both processes' RNG streams, and counts both processes in the batch arithmetic; statistics
over more than one group (advantage normalisers, per-prompt running statistics, logged spreads) span both processes."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from drf.logging import read_metrics
from tests.trainers.conftest import ROOT, TINY_CONFIG
from tests.trainers.launcher import TORCHRUN

pytestmark = pytest.mark.distributed


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


RECIPES_SCRIPT = """
import json, sys, torch
from pathlib import Path
from drf.config import load_config
from tests.trainers.conftest import ROOT, TINY_NFT_CONFIG, make_trainer, tiny_grpo_cfg, wrap_critic
from tests.trainers.test_resume import Interrupt, StopAfter, _state
from trainers.nft import NFTRunConfig

out = Path(sys.argv[1])
GRPO = ("grpo.steps=2", "grpo.checkpoint_every=1", "grpo.per_prompt_stats=true", "grpo.export=false",
        "logging.sample_every=0")


def recorded(trainer):
    # This process's own rewards and advantages, as the recipe computed them, before anything is gathered.
    seen = []
    score_videos = trainer.score_videos

    def score(videos, *args, **kwargs):
        scored = score_videos(videos, *args, **kwargs)
        seen.append({"videos": videos, "rewards": {k: v.tolist() for k, v in scored.values.items()}})
        return scored

    trainer.score_videos = score
    if trainer.section == "grpo":
        rollout = trainer.rollout

        def roll(*args):
            result = rollout(*args)  # (batch, metrics)
            seen[-1]["advantages"] = result[0].advantages.tolist()
            return result

        trainer.rollout = roll
    else:  # NFT samples every micro-batch of a step, then backpropagates each with its optimality r
        micro_backward = trainer.micro_backward

        def backward(step, micro, x0, videos, r):
            seen[len(seen) - trainer.cfg.nft.gradient_accumulation + micro]["advantages"] = r.tolist()
            return micro_backward(step, micro, x0, videos, r)

        trainer.micro_backward = backward
    return seen


straight = make_trainer(tiny_grpo_cfg(out, "name=straight", *GRPO))
seen = recorded(straight)
straight.train()
first = make_trainer(tiny_grpo_cfg(out, "name=resumed", *GRPO))
wrap_critic(first, lambda critic: StopAfter(critic, calls=2))  # dies in step 2, after checkpoint step-1
try:
    first.train()
except Interrupt:
    pass
resumed = make_trainer(tiny_grpo_cfg(out, "name=resumed", *GRPO), resume="latest")
assert resumed.step == 1
resumed.train()
torch.save({"straight": _state(straight), "resumed": _state(resumed)}, out / f"lora{resumed.accelerator.process_index}.pt")
nft_cfg = load_config(TINY_NFT_CONFIG, NFTRunConfig, [f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}",
    f"logging.output_dir={out}", "logging.report=false", "name=nft", "nft.steps=1", "nft.export=false",
    "logging.sample_every=0"])
nft = make_trainer(nft_cfg)
nft_seen = recorded(nft)
nft.train()
rank = straight.accelerator.process_index
json.dump({"grpo": seen, "table": straight.prompt_stats.table, "nft": nft_seen}, open(out / f"rank{rank}.json", "w"))
straight.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
"""


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """GRPO (2 steps straight; 1 step, a crash, a resume) and NFT (1 step) on two processes; each process's own
    rewards and advantages are recorded before the recipes gather anything."""
    if not os.path.exists(TORCHRUN):
        pytest.skip("needs torchrun (installed with torch)")
    out = tmp_path_factory.mktemp("two_processes")
    script = out / "recipes.py"
    script.write_text(RECIPES_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    command = [TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_per_prompt_statistics_span_every_process_and_resume_bit_for_bit(two_process_runs):
    out, ranks = two_process_runs
    for rank in range(2):
        states = torch.load(out / f"lora{rank}.pt", weights_only=True)
        assert states["straight"].keys() == states["resumed"].keys() and states["straight"]
        for name, weight in states["straight"].items():
            difference = float((weight - states["resumed"][name]).abs().max())
            assert torch.equal(weight, states["resumed"][name]), (rank, name, difference)
    # The running statistics a single process holding all 24 videos computes: count, mean and M2 per reward and prompt.
    values: dict[str, list[float]] = {}
    weighted = {"critic", "geometry.smoothness", "geometry.reprojection", "geometry.trajectory"}
    for record in (r for rank in ranks for r in rank["grpo"]):
        for name in weighted:
            for prompt, value in zip(record["videos"], record["rewards"][name]):
                values.setdefault(f"{name}\t{prompt}", []).append(value)
    # 24 videos of each weighted reward: 2 steps x 2 processes x 2 micro-batches x 1 prompt x 3 samples.
    assert sum(len(v) for v in values.values()) == len(weighted) * 24
    saved = json.loads((out / "straight" / "checkpoints" / "step-2" / "state.json").read_text())["extra"]
    for table in (ranks[0]["table"], ranks[1]["table"], saved["prompt_stats"]):
        assert table.keys() == values.keys()
        for key, (count, mean, m2) in table.items():
            v = torch.tensor(values[key], dtype=torch.float64)
            assert count == len(v), key
            assert abs(mean - float(v.mean())) <= 1e-9 * (1 + abs(float(v.mean()))), key
            assert abs(m2 - float(((v - v.mean()) ** 2).sum())) <= 1e-9 * (1 + float(v.abs().max()) ** 2), key


def test_logged_spreads_are_those_of_every_video_of_the_step(two_process_runs):
    out, ranks = two_process_runs
    for recipe, run, keys in (("grpo", "straight", ("reward/critic/std", "reward/geometry.dynamic_degree/std")),
                              ("nft", "nft", ())):  # fmt: skip
        for record in read_metrics(out / run):
            step = record["step"]
            batch = [r for rank in ranks for r in rank[recipe][2 * (step - 1) : 2 * step]]  # both micro-batches
            advantages = torch.tensor([a for r in batch for a in r["advantages"]])
            if recipe == "nft":
                assert record["nft/optimality_std"] == pytest.approx(float(advantages.std(unbiased=False)), abs=1e-6)
                continue
            assert record["advantage/std"] == pytest.approx(float(advantages.std(unbiased=False)), abs=1e-6)
            assert record["advantage/abs_max"] == pytest.approx(float(advantages.abs().max()), abs=1e-6)
            for key in keys:
                name = key.split("/")[1]
                rewards = torch.tensor([v for r in batch for v in r["rewards"][name]])
                assert record[key] == pytest.approx(float(rewards.std(unbiased=False)), abs=1e-6), (step, key)
