"""More than one machine, simulated on this one: two torchrun agents (machine ranks 0 and 1, meeting at a main
address and port, as the shipped 2-machine accelerate configs start them) of two CPU processes each (gloo).

Hybrid sharding (the shipped 2 x 8 HSDP config at 2 x 2: sharded within a machine, replicated across the two) must
train what data parallel over the same four processes trains, for DRF and GRPO, LoRA and full fine-tuning; and a
sharded checkpoint must resume on another number of processes (2 -> 4 hybrid -> 1) as the run would have continued
with the same global batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from drf.checkpoint import SHARDED_DIR, TRAINABLE_FILE
from tests.trainers.conftest import TINY_CONFIG, TINY_GRPO_CONFIG
from tests.trainers.launcher import ACCELERATE_CONFIGS, TORCHRUN, launch_env, lora, max_difference, run

DATA_PARALLEL_CONFIG = ACCELERATE_CONFIGS / "wan2.1_t2v_1.3b__qwen2.5_vl_7b.2nodes.yaml"
HSDP_CONFIG = ACCELERATE_CONFIGS / "wan2.1_t2v_1.3b__qwen2.5_vl_7b.2nodes.hsdp.yaml"
FSDP_CONFIG = ACCELERATE_CONFIGS / "wan2.1_t2v_1.3b__qwen2.5_vl_7b.fsdp2.yaml"
# The shipped mesh (2 machines x 8 GPUs) at this machine's size: 2 machines x 2 processes.
HSDP_ENV = launch_env(HSDP_CONFIG, "--num_processes", "4", "--parallelism_config_dp_shard_size", "2")
FSDP_ENV = launch_env(FSDP_CONFIG, "--num_processes", "2")
HYBRID_BANNER = (
    "processes: 4 processes on 2 machines, FSDP2 hybrid: the trainable transformer sharded over 2 processes, "
    "replicated over 2 groups"
)
pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="needs torchrun (installed with torch)"),
]


def test_the_shipped_configs_launch_two_machines():
    assert launch_env(DATA_PARALLEL_CONFIG, "--main_process_ip", "127.0.0.1") == {}  # no sharding: data parallel
    shipped = launch_env(HSDP_CONFIG, "--main_process_ip", "127.0.0.1")
    assert shipped["PARALLELISM_CONFIG_DP_REPLICATE_SIZE"] == "2" and shipped["PARALLELISM_CONFIG_DP_SHARD_SIZE"] == "8"
    assert shipped["FSDP_VERSION"] == "2"


def exported(run_dir: Path, trainable: str) -> dict[str, torch.Tensor]:
    """The run's export: the LoRA file, or the full transformer's weights."""
    if trainable == "lora":
        return lora(run_dir)
    return load_file(run_dir / "transformer" / "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize("trainable", ["lora", "full"])
@pytest.mark.parametrize("config", [TINY_CONFIG, TINY_GRPO_CONFIG], ids=["drf", "grpo"])
def test_hybrid_sharding_trains_what_data_parallel_trains(tmp_path, config, trainable):
    section = config.stem.removeprefix("tiny_")
    overrides = [f"{section}.steps=2", f"{section}.gradient_accumulation=1", f"{section}.ema=false"]
    if trainable == "full":
        overrides += [f"{section}.trainable=full", f"{section}.full_modules=['blocks.1.*', 'proj_out.*']",
                      f"{section}.kl_weight=0"]  # fmt: skip
    if section == "grpo":
        # GRPO's objective magnifies the rounding of any change in reduction order: the tiny critic's rewards spread
        # by ~1e-4 in a group, so normalising by that spread (std_floor 1e-3) turns rewards equal to 1e-7 into
        # advantages equal to 1e-4, and a group's nearly cancelling terms do the same to the gradient. Measured at the
        # tiny config's std_floor and learning rate: 4.7e-6 (LoRA); with std_floor 1, 2.0e-7 (LoRA) and 1.2e-6 (full),
        # where FSDP over all four processes ends 1.7e-6 from data parallel as well. At learning rate 2e-4: 1.2e-7.
        overrides += ["grpo.std_floor=1.0", "grpo.learning_rate=2e-4"]
    data_parallel = run(tmp_path / "ddp", 4, *overrides, machines=2, config=config)
    hybrid = run(tmp_path / "hsdp", 4, *overrides, machines=2, config=config, env=HSDP_ENV)
    assert HYBRID_BANNER in (tmp_path / "hsdp" / "stdout.txt").read_text()
    # Each weight is in 2 shards (a machine's two processes), not 4: the mesh is 2-D, not FSDP over all four.
    saved = FileSystemReader(hybrid / "checkpoints" / "step-2" / SHARDED_DIR).read_metadata().state_dict_metadata
    assert max(len(meta.chunks) for key, meta in saved.items() if key.startswith("trainable.")) == 2
    ours, theirs = exported(hybrid, trainable), exported(data_parallel, trainable)
    if trainable == "lora":
        assert max(float(v.abs().max()) for k, v in theirs.items() if "lora_B" in k) > 1e-5  # it trained
    # Measured: DRF 1.7e-10 (LoRA) and 1.5e-8 (full, an ulp of weights ~0.2); GRPO 1.4e-7 and 1.2e-7.
    assert max_difference(ours, theirs) < 1e-6


def sharded_trainable(checkpoint: Path, tmp: Path) -> dict[str, torch.Tensor]:
    """The trainable weights of a sharded checkpoint, read whole (offline, no process group)."""
    whole = tmp / f"{checkpoint.parent.parent.parent.name}-{checkpoint.name}.pt"
    dcp_to_torch_save(checkpoint / SHARDED_DIR, whole)
    return torch.load(whole, weights_only=True)["trainable"]


def test_a_sharded_checkpoint_resumes_on_other_numbers_of_processes(tmp_path):
    # Global batch 4 prompts a step throughout: 1 x 2 accumulation x 2 processes, then 1 x 1 x 4 (hybrid 2 x 2 over
    # two machines), then 1 x 4 x 1; EMA, the warm-up schedule and the KL term on (the tiny config's). A last-K window:
    # random-K windows are drawn per micro-batch, and the layouts have different micro-batches.
    common = ["sampling.grad_window.kind=last_k", "drf.checkpoint_every=2", "drf.keep_last=3"]
    straight = run(tmp_path / "straight", 2, *common, "drf.steps=6", env=FSDP_ENV)
    run(tmp_path / "moved", 2, *common, "drf.steps=2", env=FSDP_ENV)
    run(tmp_path / "moved", 4, *common, "drf.steps=4", env=HSDP_ENV, machines=2, resume=True)
    notes = (tmp_path / "moved" / "stdout.txt").read_text()
    assert "was trained with 4 prompts per optimiser step on 2 processes; on 4: drf.prompts_per_step=1, " \
           "drf.gradient_accumulation=1" in notes and HYBRID_BANNER in notes  # fmt: skip
    moved = run(tmp_path / "moved", 1, *common, "drf.steps=6", resume=True)
    assert "on 1: drf.prompts_per_step=1, drf.gradient_accumulation=4" in (tmp_path / "moved" / "stdout.txt").read_text()
    # Measured: 0.0 at step 4 (2 -> 4 hybrid: the same videos, each process summing one), 2.5e-8 at step 6 and 1.5e-8
    # for the EMA export (4 -> 1: one process sums the four videos' gradients in another order); lora_B moved 3.6e-3.
    at_4 = [sharded_trainable(run_dir / "checkpoints" / "step-4", tmp_path) for run_dir in (straight, moved)]
    assert max_difference(*at_4) < 1e-6
    whole_at_6 = load_file(moved / "checkpoints" / "step-6" / TRAINABLE_FILE)  # one process writes it whole
    assert max_difference(whole_at_6, sharded_trainable(straight / "checkpoints" / "step-6", tmp_path)) < 1e-6
    assert max_difference(lora(moved), lora(straight)) < 1e-6  # the export: EMA weights
