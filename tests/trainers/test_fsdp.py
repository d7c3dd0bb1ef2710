"""Sharded training (FSDP2) on two CPU processes (torchrun, gloo), against data parallel and one process, started
with the environment ``accelerate launch`` exports from the shipped example FSDP config (``tests.trainers.launcher``).
"""

from __future__ import annotations

import json
import os

import pytest
from safetensors.torch import load_file

from drf.checkpoint import SHARDED_DIR
from tests.trainers.conftest import ROOT
from tests.trainers.launcher import TORCHRUN, launch_env, lora, max_difference, run

ACCELERATE_CONFIG = ROOT / "configs" / "accelerate" / "wan2.1_t2v_1.3b__qwen2.5_vl_3b.fsdp2.yaml"
FSDP_ENV = launch_env(ACCELERATE_CONFIG, "--num_processes", "2")
pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="needs torchrun (installed with torch)"),
]


def test_sharded_and_data_parallel_reach_the_weights_of_one_process(tmp_path):
    # Global batch 4 videos per step: 2 prompts x 2 micro-batches in one process, 1 prompt each in two processes.
    steps = ["drf.steps=2", "drf.ema=false"]
    # Evaluation at steps 0 and 2 of 3 videos: two processes take 2 each, the second one's last a pad not kept.
    evaluate = ["logging.sample_every=2", "drf.eval_max_prompts=1", "drf.eval_seeds=3"]
    one_dir = run(tmp_path / "one", 1, *steps, *evaluate, "drf.prompts_per_step=2")
    one = lora(one_dir)
    data_parallel = lora(run(tmp_path / "ddp", 2, *steps))
    sharded_dir = run(tmp_path / "fsdp", 2, *steps, *evaluate, env=FSDP_ENV)
    sharded = lora(sharded_dir)
    moved = max(float(v.abs().max()) for k, v in one.items() if "lora_B" in k)  # lora_B starts at zero
    assert moved > 1e-4  # measured 5e-4: the tolerances below are hundreds of times smaller than the change
    # Measured: 1.2e-7 between one process and either two-process run (batches of 1 vs 2 round differently),
    # 3e-10 between FSDP (reduce-scatter) and data parallel (all-reduce).
    assert max_difference(one, data_parallel) < 1e-6
    assert max_difference(one, sharded) < 1e-6
    assert max_difference(data_parallel, sharded) < 1e-8
    for step in (0, 2):  # the sharded evaluation writes what one process writes: same videos, same scores
        ours, theirs = (json.loads((d / "samples" / f"step-{step}" / "scores.json").read_text()) for d in (sharded_dir, one_dir))
        assert [r["video"] for r in ours] == [r["video"] for r in theirs] and len(ours) == 3
        for mine, reference in zip(ours, theirs):
            assert mine["reward"] == pytest.approx(reference["reward"], abs=1e-5)
    checkpoint = sharded_dir / "checkpoints" / "step-2"
    assert (checkpoint / SHARDED_DIR).is_dir() and not (checkpoint / "trainable.safetensors").exists()
    assert (tmp_path / "ddp" / "tiny_drf" / "checkpoints" / "step-2" / "trainable.safetensors").is_file()
    # An unsharded checkpoint is not resumed by a sharded launch; the line says how to resume it.
    stderr = run(tmp_path / "ddp", 2, *steps, "drf.steps=4", env=FSDP_ENV, resume=True, fails=True)
    assert "error: " + str(tmp_path / "ddp" / "tiny_drf" / "checkpoints" / "step-2") + ": saved unsharded (one process " \
        "or data parallel); resume it without an FSDP config, on any number of processes\n" in stderr  # fmt: skip


def test_sharded_checkpoint_resumes_exactly(tmp_path):
    # EMA on (the tiny config's), so the optimizer, the schedule and the EMA shadow all come back from the shards.
    straight = lora(run(tmp_path / "straight", 2, "drf.steps=4", env=FSDP_ENV))
    run(tmp_path / "resumed", 2, "drf.steps=2", env=FSDP_ENV)
    resumed = lora(run(tmp_path / "resumed", 2, "drf.steps=4", env=FSDP_ENV, resume=True))
    assert max_difference(straight, resumed) == 0.0
    # Not into an adapter of another rank: one line naming the checkpoint and the first tensor that differs.
    stderr = run(tmp_path / "resumed", 2, "drf.steps=6", "drf.lora_rank=8", env=FSDP_ENV, resume=True, fails=True)
    assert "step-4/sharded: ValueError: Size mismatch between saved torch.Size([4, 24]) and current: " in stderr
    assert "(different LoRA rank/targets?)" in stderr


def test_example_accelerate_configs_ask_for_fsdp2_by_transformer_block():
    for config in sorted((ROOT / "configs" / "accelerate").glob("*.yaml")):
        if "distributed_type: FSDP" not in config.read_text():
            continue  # a data-parallel example
        env = launch_env(config, "--main_process_ip", "127.0.0.1")
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2", config.name
        assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "WanTransformerBlock", config.name


def test_fsdp_version_1_is_refused_in_one_line(monkeypatch):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from drf.errors import ConfigError
    from trainers.distributed import fsdp_plugin

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    launch = SimpleNamespace(num_processes=2, distributed_type=DistributedType.MULTI_CPU)
    with pytest.raises(ConfigError, match="drf shards with FSDP2: set fsdp_config.fsdp_version: 2"):
        fsdp_plugin(launch)
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert fsdp_plugin(launch).fsdp_version == 2
    assert fsdp_plugin(SimpleNamespace(num_processes=1)) is None  # one process: nothing to shard over


def test_both_wan22_experts_are_sharded_and_match_data_parallel(tmp_path):
    # Each expert is its own FSDP root (the ModuleDict holding them is never called); both LoRA files are exported.
    experts = ["model.tiny=wan-tiny-experts", "model.train_experts=both", "drf.steps=2", "drf.ema=false"]
    data_parallel = run(tmp_path / "ddp", 2, *experts)
    sharded = run(tmp_path / "fsdp", 2, *experts, env=FSDP_ENV)
    for name in ("pytorch_lora_weights.safetensors", "pytorch_lora_weights_transformer_2.safetensors"):
        ours, theirs = (load_file(d / "lora" / name) for d in (sharded, data_parallel))
        assert max(float(v.abs().max()) for k, v in theirs.items() if "lora_B" in k) > 1e-4  # it trained
        assert max_difference(ours, theirs) < 1e-8  # measured 3e-10


def test_sharded_full_fine_tuning_exports_a_loadable_transformer(tmp_path):
    from diffusers import WanTransformer3DModel

    full = ["drf.steps=2", "drf.ema=false", "drf.kl_weight=0", "drf.trainable=full",
            "drf.full_modules=['blocks.1.*', 'proj_out.*']"]
    exported = {}
    for name, env in (("ddp", None), ("fsdp", FSDP_ENV)):
        folder = run(tmp_path / name, 2, *full, env=env) / "transformer"
        exported[name] = WanTransformer3DModel.from_pretrained(folder).state_dict()  # a stock diffusers load
    assert max_difference(exported["fsdp"], exported["ddp"]) < 1e-6  # measured 1.5e-8: an ulp of weights ~0.2
