"""The launch layout read from accelerate's settings (data parallel, FSDP, hybrid) and the batch a resume on another
number of processes keeps; no processes are started (the launches themselves: test_multinode.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import accelerate.utils
import pytest

from drf.checkpoint import trainable_state_dict
from drf.errors import ConfigError, InputError
from tests.trainers.conftest import make_trainer
from trainers.distributed import Layout, layout_of
from trainers.drf import DRFConfig
from trainers.run import check_shared, keep_global_batch

FSDP = object()  # any plugin: layout_of only asks whether there is one


def launch(processes: int) -> SimpleNamespace:
    return SimpleNamespace(num_processes=processes, is_main_process=True)


@pytest.fixture
def environment(monkeypatch):
    """layout_of under the environment ``accelerate launch`` exports (only the given keys set)."""

    def layout(processes: int, plugin=FSDP, **env: str) -> Layout:
        for key in ("LOCAL_WORLD_SIZE", "FSDP_SHARDING_STRATEGY", "PARALLELISM_CONFIG_DP_REPLICATE_SIZE",
                    "PARALLELISM_CONFIG_DP_SHARD_SIZE", "PARALLELISM_CONFIG_TP_SIZE"):  # fmt: skip
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return layout_of(SimpleNamespace(num_processes=processes, parallelism_config=None), plugin)

    return layout


def test_layouts_that_accelerate_configs_ask_for(environment):
    # 16 processes, 8 per machine (accelerate launch and torchrun set LOCAL_WORLD_SIZE on each machine).
    assert environment(16, None, LOCAL_WORLD_SIZE="8") == Layout(16, 2, 16, 1)  # data parallel
    assert environment(16, LOCAL_WORLD_SIZE="8") == Layout(16, 2, 1, 16)  # FULL_SHARD: one group of all
    # FSDP2's form: parallelism_config dp_replicate_size x dp_shard_size (exported as PARALLELISM_CONFIG_*).
    sizes = {"PARALLELISM_CONFIG_DP_REPLICATE_SIZE": "2", "PARALLELISM_CONFIG_DP_SHARD_SIZE": "8"}
    assert environment(16, LOCAL_WORLD_SIZE="8", **sizes) == Layout(16, 2, 2, 8)
    # FSDP1's spelling: shard within each machine, replicate across machines.
    assert environment(16, LOCAL_WORLD_SIZE="8", FSDP_SHARDING_STRATEGY="HYBRID_SHARD") == Layout(16, 2, 2, 8)
    assert environment(4, LOCAL_WORLD_SIZE="4", FSDP_SHARDING_STRATEGY="HYBRID_SHARD") == Layout(4, 1, 1, 4)


def test_layout_lines_of_the_start_up_banner():
    assert Layout(1, 1, 1, 1).describe() == "processes: 1 process"
    assert Layout(16, 2, 16, 1).describe() == (
        "processes: 16 processes on 2 machines, data parallel (a whole copy of the trainable weights on each)"
    )
    assert Layout(8, 1, 1, 8).describe() == "processes: 8 processes, FSDP2: the trainable transformer sharded over all 8"
    assert Layout(16, 2, 2, 8).describe() == (
        "processes: 16 processes on 2 machines, FSDP2 hybrid: the trainable transformer sharded over 8 processes, "
        "replicated over 2 groups"
    )


def test_layouts_drf_cannot_take_are_refused_in_one_line(environment):
    sizes = {"PARALLELISM_CONFIG_DP_REPLICATE_SIZE": "2", "PARALLELISM_CONFIG_DP_SHARD_SIZE": "8"}
    with pytest.raises(ConfigError, match=r"^the accelerate config asks for parallelism_config dp_replicate_size 2 "
                       r"x dp_shard_size 8 = 16 processes in groups of 8, but the launch has 8; set "):  # fmt: skip
        environment(8, **sizes)
    with pytest.raises(ConfigError, match="drf shards data-parallel only: set parallelism_config_tp_size"):
        environment(8, PARALLELISM_CONFIG_TP_SIZE="2")
    with pytest.raises(ConfigError, match="fsdp_sharding_strategy SHARD_GRAD_OP has no FSDP2 form in drf; use "):
        environment(8, FSDP_SHARDING_STRATEGY="SHARD_GRAD_OP")


def saved(processes: int, prompts_per_step: int, accumulation: int) -> dict:
    layout = {"processes": processes, "prompts_per_step": prompts_per_step, "gradient_accumulation": accumulation}
    return {"data_state": {"position": 8, "epoch": 2, **layout}}


@pytest.mark.parametrize(
    ("was", "now", "config", "kept"),
    [
        ((2, 1, 2), 4, (1, 2), (1, 1)),  # 4 prompts a step: 1 x 2 x 2 processes -> 1 x 1 x 4
        ((4, 1, 1), 1, (1, 1), (1, 4)),  # -> 1 x 4 accumulation: the micro-batch (memory) does not grow
        ((2, 2, 1), 4, (2, 1), (1, 1)),  # a micro-batch of 2 cannot fill 1 prompt per process: it shrinks
        ((1, 3, 4), 2, (3, 4), (3, 2)),  # 12 prompts: the config's micro-batch of 3 divides the share of 6
        ((1, 3, 4), 2, (4, 1), (3, 2)),  # ... a config asking for 4 a micro-batch gets the largest that divides
        ((2, 1, 2), 2, (2, 5), (2, 5)),  # same processes: the config decides, as for any resume
    ],
)
def test_a_resume_on_other_processes_keeps_the_global_batch(was, now, config, kept):
    cfg = DRFConfig(prompts_per_step=config[0], gradient_accumulation=config[1])
    keep_global_batch(cfg, "drf", saved(*was), launch(now), Path("run/checkpoints/step-2"))
    assert (cfg.prompts_per_step, cfg.gradient_accumulation) == kept


def test_a_global_batch_the_processes_cannot_split_is_refused_in_one_line():
    cfg = DRFConfig(prompts_per_step=1, gradient_accumulation=2)
    with pytest.raises(InputError) as err:
        keep_global_batch(cfg, "drf", saved(2, 1, 2), launch(3), Path("run/checkpoints/step-2"))
    assert str(err.value) == (
        "run/checkpoints/step-2: trained with 4 prompts per optimiser step (1 x 2 accumulation x 2 processes), which "
        "3 processes cannot split evenly; resume with 1, 2, 4 processes (accelerate launch --num_processes)"
    )
    before = {"data_state": {"position": 8, "epoch": 2}}  # a checkpoint that did not record its layout
    keep_global_batch(cfg, "drf", before, launch(3), Path("run/checkpoints/step-2"))
    assert (cfg.prompts_per_step, cfg.gradient_accumulation) == (1, 2)


def test_a_run_directory_some_process_cannot_see_is_refused_on_every_process(tmp_path, monkeypatch):
    (tmp_path / "config.yaml").write_text("name: x\n")
    # Four processes on two machines; those of the second (ranks 2, 3) see another disk, without the file.
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda mine: [True, True, False, False])
    with pytest.raises(InputError) as err:
        check_shared(tmp_path, launch(4))
    assert str(err.value) == (
        f"logging.output_dir: processes [2, 3] do not see {tmp_path / 'config.yaml'}, which the main process wrote; "
        "put the output directory on a filesystem that every machine mounts"
    )
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda mine: mine * 4)
    check_shared(tmp_path, launch(4))  # every process sees it: nothing to say


def test_drf_trains_the_same_whatever_the_split_into_micro_batches(run_cfg):
    # Two prompts a step in one micro-batch, or one in each of two: the same prompts, and each video the noise of
    # its place in the step's batch, so the same gradient up to the order its terms are summed in.
    steps = ["drf.steps=2", "drf.ema=false", "drf.export=false", "drf.checkpoint_every=0", "logging.sample_every=0",
             "sampling.grad_window.kind=last_k"]  # fmt: skip
    trained = []
    for name, per_step, accumulation in (("one", 2, 1), ("two", 1, 2)):
        cfg = run_cfg(f"name={name}", *steps, f"drf.prompts_per_step={per_step}",
                      f"drf.gradient_accumulation={accumulation}")  # fmt: skip
        trainer = make_trainer(cfg)
        trainer.train()
        trained.append({k: v.detach().clone() for k, v in trainable_state_dict(trainer.transformer).items()})
    assert max(float(v.abs().max()) for k, v in trained[0].items() if "lora_B" in k) > 1e-4  # it trained
    # Measured 2.1e-7 (a batch of two and two batches of one round differently); 9.9e-4 with noise drawn per
    # micro-batch and place in it.
    assert max(float((trained[0][k] - trained[1][k]).abs().max()) for k in trained[0]) < 1e-6
