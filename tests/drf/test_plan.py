"""``drf plan``: the tracker counts what torch allocates, the shipped configs are the published models, the plan of
a tiny step runs the recipe's own code, and bad input gets one line naming what to pass instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from drf.cli import main
from drf.commands import resolve_schema
from drf.config import load_config
from drf.errors import ConfigError
from drf.plan.advice import candidates
from drf.plan.gpus import GIB, GPUS, MIB, gpu_memory
from drf.plan.models import fake_module, shipped_configs
from drf.plan.step import sharded
from drf.plan.tracker import ACTIVATIONS, GRADIENTS, OPTIMIZER, SCRATCH, StepTracker

ROOT = Path(__file__).resolve().parents[2]
F32 = 4


# ------------------------------------------------------------------------------------------------ tracker
@pytest.mark.parametrize("fake", [False, True], ids=["real", "fake"])
def test_tracker_counts_live_storage_and_peaks_per_phase(fake):
    """bytes = numel x element size while a storage lives; views add nothing; the peak of each phase is its own."""
    x = FakeTensorMode().from_tensor(torch.ones(1000)) if fake else torch.ones(1000)  # made before: not counted
    tracker = StepTracker()
    with tracker:
        with tracker.phase("first"):
            a = x + 1  # 4000 bytes
            b = a * 2  # 4000 more
            view = b[:10]  # a view: no new storage
            del a  # back to 4000
        with tracker.phase("second"):
            c = b.double()  # 8000 more: 12000
            del c, b, view
    assert tracker.phases["first"].bytes == 2 * 1000 * F32
    assert tracker.phases["second"].bytes == 1000 * F32 + 1000 * 8
    assert tracker.peak.bytes == 12000
    assert tracker.total == 0


def test_tracker_labels_gradients_and_optimizer_state():
    """A parameter's accumulated .grad counts as a gradient, Adam's two moments (and step) as optimiser state."""
    layer = nn.Linear(100, 10, bias=False)
    optimizer = torch.optim.AdamW(layer.parameters(), foreach=False)
    tracker = StepTracker()
    tracker.add_static(layer, "weights")
    tracker.watch_gradients(layer.parameters())
    tracker.watch_optimizers()
    with tracker:
        layer(torch.ones(3, 100)).sum().backward()
        optimizer.step()
    tracker.close()
    assert tracker.by_kind["weights"] == 1000 * F32
    assert tracker.by_kind[GRADIENTS] == 1000 * F32
    assert tracker.by_kind[OPTIMIZER] == 2 * 1000 * F32 + F32  # exp_avg, exp_avg_sq, step (a float32 scalar)


def test_gradient_free_replay_charges_the_first_calls_peak():
    """A module called again without gradient on the same shapes is not re-run, and the peak is that of re-running."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 512), nn.GELU(), nn.Linear(512, 64))
    x = torch.ones(8, 64)

    def peak(replay: bool) -> tuple[int, int]:
        tracker = StepTracker()
        tracker.add_static(model, "weights")
        if replay:
            tracker.replay_gradient_free_calls([model])
        calls = []
        hook = model[0].register_forward_hook(lambda *a: calls.append(1))
        with tracker, torch.no_grad():
            y = model(x)
            y = model(y)  # same shapes: replayed
        tracker.close()
        hook.remove()
        return tracker.peak.bytes, len(calls)

    (replayed, runs), (rerun, all_runs) = peak(True), peak(False)
    assert runs == 1 and all_runs == 2
    assert replayed == rerun


def test_kernel_scratch_counts_toward_the_peak_only():
    """A kernel's scratch is live while its op runs: it raises the peak, under its own kind, and is gone after."""
    scratch = 10_000
    tracker = StepTracker(lambda func, args, out: scratch if func is torch.ops.aten.mul.Tensor else 0)
    x = torch.ones(1000)
    with tracker:
        y = x + 1  # 4000 bytes, no scratch
        z = y * 2  # 4000 more, and 10000 while the multiplication runs
    assert tracker.peak.bytes == 2 * 1000 * F32 + scratch
    assert tracker.peak.by_kind[SCRATCH] == scratch
    assert tracker.total == 2 * 1000 * F32 and tracker.by_kind[SCRATCH] == 0
    del y, z


def test_fake_reads_take_the_usual_branch():
    """bool() of a fake flag is True, float() of a fake value is 0.0, and a fake mask selects every element."""
    mode = FakeTensorMode()
    x = mode.from_tensor(torch.ones(5))
    with StepTracker():
        assert bool(torch.isfinite(x).all()) is True
        assert float(x.sum()) == 0.0
        assert x[x > 0].shape == (5,)


# The resident-set peak of one CPU convolution against the tracker's peak with and without the kernel's scratch, in a
# child process whose allocator maps every buffer over 64 KB on its own (so a freed buffer leaves the resident set)
# and whose peak resident set is reset before each op (/proc/self/clear_refs).
CONV_PROBE = """
import json, sys
import torch
import torch.nn.functional as F
from drf.plan.kernels import cpu_conv_scratch
from drf.plan.tracker import StepTracker

def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))

def measure(run, scratch):
    before = status("VmRSS:")
    open("/proc/self/clear_refs", "w").write("5")
    tracker = StepTracker(cpu_conv_scratch if scratch else None)
    with tracker:
        out = run()
    return status("VmHWM:") - before, tracker.peak.bytes, out

torch.set_num_threads(1)
torch.manual_seed(0)
shape, channels, padding = json.loads(sys.argv[1])
x = torch.randn(shape, requires_grad=True)
w = torch.randn(channels, shape[1], 3, 3, 3)  # frozen, as the VAE is in the decode with gradient
backend = str(torch._C._select_conv_backend(x, w, None, (1,) * 3, (padding,) * 3, (1,) * 3, False, (0,) * 3, 1, None))
figures = {"backend": backend.split(".")[-1]}
for scratch in (True, False, True):  # the first run warms the kernels up (oneDNN generates its code)
    fwd, fwd_plan, y = measure(lambda: F.conv3d(x, w, padding=padding), scratch)
    grad = torch.ones_like(y)
    bwd, bwd_plan, _ = measure(lambda: torch.autograd.grad(y, x, grad), scratch)
    figures[scratch] = {"forward": [fwd, fwd_plan], "backward": [bwd, bwd_plan]}
    del y, grad
print(json.dumps(figures))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
@pytest.mark.parametrize(
    "shape, channels, padding, backend",
    [((1, 16, 8, 168, 168), 16, 1, "Mkldnn"), ((1, 16, 4, 64, 64), 16, 1, "Slow3d")],
    ids=["onednn", "im2col"],
)
def test_conv_scratch_is_the_resident_set_growth_of_one_convolution(shape, channels, padding, backend):
    """With the kernel's scratch the tracker's peak of a Conv3d forward and of its backward (input gradient) is the
    resident set's growth within 10 % (the remainder: page rounding, oneDNN's weight reorder); without it, the peak
    misses by a third or more (oneDNN: a blocked copy of the input and output; im2col: 27 columns per input voxel)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", CONV_PROBE, json.dumps([shape, channels, padding])],
                         capture_output=True, text=True, env=env, check=True)  # fmt: skip
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["backend"] == backend  # the kernel PyTorch picks for this shape is the one under test
    for op in ("forward", "backward"):
        measured, planned = figures["true"][op]
        assert planned == pytest.approx(measured, rel=0.10), (op, measured, planned)
        measured, tensors_only = figures["false"][op]
        assert tensors_only < 0.67 * measured, (op, measured, tensors_only)


# ------------------------------------------------------------------------------------------------ models
PUBLISHED = {  # parameters of the published checkpoints (model cards), transformer / critic only
    "Qwen/Qwen2.5-VL-7B-Instruct": 8.29e9,
    "Qwen/Qwen2.5-VL-3B-Instruct": 3.75e9,
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": 14.3e9,
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": 1.42e9,
}


@pytest.mark.parametrize("hub_id", sorted(PUBLISHED))
def test_shipped_configs_build_the_published_sizes(hub_id):
    """Built on the meta device from the shipped config, each model has its published parameter count (within 1 %)."""
    import json

    import transformers
    from diffusers import WanTransformer3DModel

    data = json.loads(shipped_configs()[hub_id].read_text())
    with torch.device("meta"):
        if data["family"] == "wan":
            model = WanTransformer3DModel.from_config(data["transformer"])
        else:
            model = transformers.Qwen2_5_VLForConditionalGeneration(transformers.Qwen2_5_VLConfig(**data["config"]))
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(PUBLISHED[hub_id], rel=0.01)


def test_fake_module_keeps_tied_weights_tied_and_allocates_nothing():
    mode = FakeTensorMode()
    with torch.device("meta"):
        embed = nn.Embedding(10, 4)
        head = nn.Linear(4, 10, bias=False)
    head.weight = embed.weight
    model = fake_module(nn.ModuleList([embed, head]), mode)
    assert model[0].weight is model[1].weight
    assert type(model[0].weight.data).__name__ == "FakeTensor" and model[0].weight.device.type == "cpu"


# ------------------------------------------------------------------------------------------------ plans
@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
    from drf.plan.step import plan_step

    out = tmp_path_factory.mktemp("plan")
    path = str(ROOT / "configs/tiny_drf.yaml")
    cfg = load_config(path, resolve_schema(path), [f"logging.output_dir={out}"])
    return cfg, plan_step(cfg)


def test_tiny_plan_holds_the_models_weights_and_runs_every_phase(tiny_plan):
    """What is held before the step is exactly the parameters and buffers of the models the config builds."""
    from critics.tiny import build_tiny_model
    from drf.models.tiny import build_tiny_wan_components

    cfg, plan = tiny_plan
    components = build_tiny_wan_components(cfg.model.tiny)
    critic, _ = build_tiny_model(cfg.critic.family)

    def nbytes(module):
        return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])

    assert plan.static["weights: VAE"] == nbytes(components["vae"])
    assert plan.static["weights: text encoder"] == nbytes(components["text_encoder"])
    assert plan.static["weights: critic"] == nbytes(critic)
    assert plan.static["weights: transformer"] == nbytes(components["transformer"])  # LoRA counted apart
    assert plan.static["trainable weights"] > 0 and plan.static["EMA"] == plan.static["trainable weights"]
    assert {"sampling", "decode", "rewards", "backward"} <= set(plan.phases)
    assert plan.peak.bytes > sum(plan.static.values())
    assert plan.peak.by_kind.get(ACTIVATIONS, 0) > 0


def test_fsdp_divides_the_trained_module_and_adds_two_blocks(tiny_plan):
    _, plan = tiny_plan
    four = sharded(plan, 4)
    frozen = sum(v for k, v in plan.static.items() if k not in plan.sharded_kinds)
    assert four.static["weights: transformer"] == plan.static["weights: transformer"] // 4
    assert sum(four.static.values()) - frozen == sum(
        plan.static[k] // 4 for k in plan.static if k in plan.sharded_kinds
    )
    assert plan.block_bytes > 0


def test_cli_says_whether_it_fits(tiny_plan, capsys, tmp_path):
    path = str(ROOT / "configs/tiny_drf.yaml")
    assert main(["plan", path, "--gpu-memory", "24GB", "--set", f"logging.output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "fits on 24GB" in out and "peak:" in out and "backward" in out


def test_candidates_start_with_the_cheapest_change():
    path = str(ROOT / "configs/wan2.1_t2v_1.3b__qwen2.5_vl_7b.yaml")
    cfg = load_config(path, resolve_schema(path), ["drf.optimizer=adamw", "critic.quantization=none"])
    changes = list(candidates(cfg, processes=1, fsdp=False))
    names = [c.what for c in changes]
    assert names[0] == "decode checkpointing segments"
    assert names.index("4-bit critic") < names.index("8-bit AdamW") < names.index("5 frames")
    assert [c.processes for c in changes if c.processes] == [2, 4, 8]


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_hub_id_names_the_known_ones(tmp_path, capsys):
    path = str(ROOT / "configs/wan2.1_t2v_1.3b__qwen2.5_vl_7b.yaml")
    code = main(
        ["plan", path, "--set", "model.path=someone/Unknown-Video-Model", "--set", f"logging.output_dir={tmp_path}"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert (
        "someone/Unknown-Video-Model" in err and "Wan-AI/Wan2.1-T2V-14B-Diffusers" in err and "local directory" in err
    )


def test_unknown_gpu_lists_the_known_ones():
    with pytest.raises(ConfigError, match="--gpu 'v100'.*h100.*--gpu-memory"):
        gpu_memory("v100")


@pytest.mark.parametrize(
    ("text", "expected"), [("80GB", 80 * 10**9), ("48GiB", 48 * GIB), ("81559MiB", 81559 * MIB), ("24", 24 * 10**9)]
)
def test_gpu_memory_sizes(text, expected):
    assert gpu_memory(memory=text)[1] == expected


def test_gpu_names_are_nvidia_smi_totals():
    assert gpu_memory("h100")[1] == GPUS["h100"] * MIB


def test_config_without_recipe_is_refused(capsys):
    code = main(["plan", str(ROOT / "configs/tiny_sample.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no recipe section to plan" in err and len(err.splitlines()) == 1


def test_suggest_plans_each_change_until_three_fit(tiny_plan):
    """Each candidate is planned with its overrides; FSDP2 divides the base plan; planning stops at three that fit."""
    import dataclasses

    from drf.plan.advice import suggest
    from drf.plan.tracker import PhasePeak

    cfg, plan = tiny_plan
    asked = []

    def replan(overrides):
        asked.append(overrides)
        size = plan.peak.bytes // 2 if "critic.quantization=4bit" in overrides else plan.peak.bytes * 2
        return dataclasses.replace(plan, peak=PhasePeak(size, {ACTIVATIONS: size}))

    found = list(suggest(cfg, plan, plan.peak.bytes - 1, replan))
    assert asked[0] == ("model.decode_checkpointing=segments",)
    fitting = [s.change.what for s in found if s.plan.peak.bytes <= plan.peak.bytes - 1]
    assert fitting[0] == "4-bit critic" and len(fitting) <= 3
    assert all(s.plan.peak.bytes > plan.peak.bytes - 1 for s in found if s.change.what not in fitting)
