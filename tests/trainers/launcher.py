"""Start ``drf train`` of a tiny config on CPU processes the way ``accelerate launch`` starts them on GPUs: one process,
one machine of several (torchrun --standalone), or several machines simulated on this one (one torchrun agent per
machine, ranked 0..M-1, meeting at a main address and port as ``--machine_rank``/``--main_process_ip`` do).

accelerate runs CPU processes as plain multi-CPU and ignores an FSDP request, so a sharded launch passes the
environment ``accelerate launch`` exports from an accelerate config (:func:`launch_env`), which drf reads on any
device (``trainers.distributed.fsdp_plugin`` and ``layout_of``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.trainers.conftest import ROOT, TINY_CONFIG

TORCHRUN = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
ACCELERATE_CONFIGS = ROOT / "configs" / "accelerate"


def launch_env(config: Path, *flags: str) -> dict[str, str]:
    """The sharding environment ``accelerate launch --config_file config [flags]`` gives each process: the FSDP
    settings and the parallelism config's sizes. (accelerate builds a parallelism config on GPUs only and refuses
    one on CPU, so its switch ``ACCELERATE_USE_PARALLELISM_CONFIG`` is left out; drf reads the sizes itself.)"""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config), *flags, "train.py"])
    env = prepare_multi_gpu_env(_validate_launch_command(args)[0])
    wanted = ("FSDP_", "PARALLELISM_CONFIG_", "ACCELERATE_USE_FSDP")
    return {k: v for k, v in env.items() if k.startswith(wanted)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(
    out: Path, processes: int, *overrides: str, env: dict[str, str] | None = None, resume: bool = False,
    fails: bool = False, machines: int = 1, config: Path = TINY_CONFIG,
) -> Path | str:
    """``drf train`` of the tiny ``config`` (no evaluation, no report) on ``processes`` processes spread over
    ``machines`` -> the run directory, or with ``fails`` the stderr of the run, which must fail."""
    command = [
        "-m", "drf", "train", str(config),
        "--set", f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}",
        "--set", f"logging.output_dir={out}",
        "--set", "logging.sample_every=0",
        "--set", "logging.report=false",
        *[item for o in overrides for item in ("--set", o)],
        *(["--resume", "latest"] if resume else []),
    ]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    if processes == 1:
        launchers = [[sys.executable]]
    elif machines == 1:
        launchers = [[TORCHRUN, "--standalone", "--nproc_per_node", str(processes)]]
    else:
        rendezvous = ["--nnodes", str(machines), "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
        per_machine = ["--nproc_per_node", str(processes // machines)]
        launchers = [[TORCHRUN, *rendezvous, "--node_rank", str(rank), *per_machine] for rank in range(machines)]
    logs = [(tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")) for _ in launchers]  # pipes could fill
    agents = [
        subprocess.Popen([*launcher, *command], cwd=ROOT, env=full_env, stdout=stdout, stderr=stderr, text=True)
        for launcher, (stdout, stderr) in zip(launchers, logs)
    ]
    codes = [agent.wait(timeout=900) for agent in agents]
    stdout, stderr = ("".join(log[i].seek(0) or log[i].read() for log in logs) for i in (0, 1))
    if fails:
        assert any(codes)
        return stderr
    assert not any(codes), stderr[-3000:]
    (out / "stdout.txt").write_text(stdout)  # beside the run directory: the banner and notes of the last launch
    return out / config.stem


def lora(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "lora" / "pytorch_lora_weights.safetensors")


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)
