"""Setting a run up before models load: its directory, resolved config and questions; the batch arithmetic it
prints (and keeps when a run resumes on another number of processes); the critic config each process loads."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from critics.tiny import build_tiny_critic
from drf.checkpoint import describe_dir, list_checkpoints
from drf.config import dump_config, save_config
from drf.errors import InputError
from drf.run_dir import RunDir
from prompts.registry import decompose_all
from trainers.config import TrainerConfig
from trainers.data import PromptSplits, load_prompt_splits


def check_fresh_run_dir(run_dir: Path) -> None:
    """Refuse to start over a run that has a complete checkpoint or exported weights (resuming is explicit); a start
    that stopped before its first checkpoint was complete (Ctrl-C, a kill mid-write) holds nothing to resume, so it
    is discarded with one line saying so, half-written checkpoint folders included, and the run starts over."""
    run = RunDir(run_dir)
    if list_checkpoints(run_dir):
        raise InputError(
            f"run directory {run_dir} already holds a run; pass --resume latest to continue it, "
            "or choose another name (--set name=...)"
        )
    exported = [p.name + "/" for p in (run.lora, run.transformer) if p.exists()]
    if exported:
        raise InputError(
            f"run directory {run_dir} holds a finished run's exported weights ({', '.join(exported)}) but no "
            "checkpoint to resume; choose another name (--set name=...) or move them away"
        )
    if run.has_training():
        print(f"note: {run_dir} holds a start that stopped before its first complete checkpoint "
              f"({describe_dir(run_dir)}); discarding it and starting over")  # fmt: skip
        shutil.rmtree(run_dir)


@dataclass
class RunSetup:
    """What a recipe needs before models load: where it writes, its prompts and their question sets."""

    run_dir: Path
    splits: PromptSplits
    question_sets: dict[str, Any]
    config_yaml: str


def run_dir_of(cfg: Any) -> Path:
    return Path(cfg.logging.output_dir) / cfg.name


def prepare_run(cfg: Any, accelerator: Any, resume: str | None) -> RunSetup:
    """Create ``output_dir/name`` with ``config.yaml`` and ``questions.jsonl`` (every train and eval prompt decomposed
    once, on the main process; the others read the file). ``cfg`` needs name, prompts, eval_prompts, questions and
    logging sections."""
    run_dir = run_dir_of(cfg)
    if resume is None and accelerator.is_main_process:
        check_fresh_run_dir(run_dir)
    splits = load_prompt_splits(cfg.prompts, cfg.eval_prompts)
    everything = list(dict.fromkeys(splits.train + splits.eval))
    if accelerator.is_main_process:
        save_config(cfg, run_dir)
        decompose_all(everything, cfg.questions, run_dir, where=splits.where)
    accelerator.wait_for_everyone()
    check_shared(run_dir, accelerator)
    question_sets = dict(zip(everything, decompose_all(everything, cfg.questions, run_dir, where=splits.where)))
    return RunSetup(run_dir, splits, question_sets, dump_config(cfg))


def check_shared(run_dir: Path, accelerator: Any) -> None:
    """Refuse, on every process at once, a run directory that some process cannot see: every process writes
    evaluation videos and checkpoint shards into it and reads checkpoints from it, so on several machines it must be
    on a filesystem they all mount."""
    if accelerator.num_processes == 1:
        return
    from accelerate.utils import gather_object  # accelerate loads slowly; drf --help does not need it

    blind = [rank for rank, seen in enumerate(gather_object([RunDir(run_dir).config.is_file()])) if not seen]
    if blind:
        raise InputError(
            f"logging.output_dir: processes {blind} do not see {run_dir / RunDir.CONFIG}, which the main process "
            "wrote; put the output directory on a filesystem that every machine mounts"
        )


def batch_arithmetic(
    cfg: TrainerConfig, num_processes: int, num_train_prompts: int, window: str, frames: str, videos_per_prompt: int = 1
) -> list[str]:
    """The start-up summary of how prompts become optimiser steps (ddpo-pytorch style)."""
    per_step = cfg.prompts_per_step * cfg.gradient_accumulation * num_processes
    total = per_step * cfg.steps
    group = f" x {videos_per_prompt} videos per prompt" if videos_per_prompt > 1 else ""
    return [
        f"batch: {cfg.prompts_per_step} prompts per micro-batch x {cfg.gradient_accumulation} accumulation x "
        f"{num_processes} processes{group} = {per_step * videos_per_prompt} videos per optimiser step",
        f"steps: {cfg.steps} -> {total * videos_per_prompt} videos = {total / num_train_prompts:.2f} passes over "
        f"{num_train_prompts} train prompts",
        f"window: {window}",
        f"frames: {frames}",
    ]


def keep_global_batch(cfg: TrainerConfig, section: str, saved: Mapping[str, Any], accelerator: Any, where: Path) -> None:
    """Resumed on a different number of processes, go on with the checkpoint's global batch (prompts per optimiser
    step over all processes), so that the prompt stream, the per-video noise and the gradient's mean continue as on
    the old layout: the micro-batch keeps the config's ``prompts_per_step`` where that divides the new per-process
    share (it sets memory), else takes the largest size below it that does, and accumulation makes up the rest;
    ``cfg`` is changed in place. A global batch the processes cannot split evenly is refused in one line. ``saved``:
    the checkpoint's ``state.json`` (one saved before layouts were recorded changes nothing)."""
    layout, processes = saved.get("data_state", {}), accelerator.num_processes
    if layout.get("processes", processes) == processes:
        return
    total = layout["prompts_per_step"] * layout["gradient_accumulation"] * layout["processes"]
    if total % processes:
        fits = ", ".join(str(n) for n in range(1, total + 1) if total % n == 0)
        raise InputError(
            f"{where}: trained with {total} prompts per optimiser step ({layout['prompts_per_step']} x "
            f"{layout['gradient_accumulation']} accumulation x {layout['processes']} processes), which {processes} "
            f"processes cannot split evenly; resume with {fits} processes (accelerate launch --num_processes)"
        )
    share = total // processes
    micro = max(n for n in range(1, min(cfg.prompts_per_step, share) + 1) if share % n == 0)
    cfg.prompts_per_step, cfg.gradient_accumulation = micro, share // micro
    if accelerator.is_main_process:
        print(
            f"note: {where} was trained with {total} prompts per optimiser step on {layout['processes']} processes; "
            f"on {processes}: {section}.prompts_per_step={micro}, {section}.gradient_accumulation={share // micro}"
        )


def critic_config_for(critic_cfg: Any, accelerator: Any, run_dir: Path) -> Any:
    """The critic config one process loads: its own GPU under ``accelerate launch``, and a tiny critic built once.

    A tiny critic (random, seeded) is written to ``run_dir/tiny_critic`` by the main process and loaded from there by
    all, so every process scores with the same weights (each building its own would write where only the main
    process may save).
    """
    import dataclasses

    changes: dict[str, Any] = {}
    if critic_cfg.device == "cuda" and accelerator.num_processes > 1:
        changes["device"] = str(accelerator.device)
    if critic_cfg.tiny:
        directory = run_dir / "tiny_critic"
        if accelerator.is_main_process and not (directory / "config.json").is_file():
            build_tiny_critic(critic_cfg.family, directory)
        accelerator.wait_for_everyone()
        changes.update(tiny=False, path=str(directory))
    return dataclasses.replace(critic_cfg, **changes)


@contextmanager
def removed_on_failure(run_dir: Path, accelerator: Any) -> Iterator[None]:
    """A run directory that this start creates is deleted again if the start fails (a bad prompt, a model that does
    not load), so the rerun begins clean instead of finding a half-made run."""
    created = not run_dir.exists()
    try:
        yield
    except BaseException:
        if created and accelerator.is_main_process:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
