"""Checkpoints that are never half-written, and a resume that continues a run bit for bit.

A checkpoint is the directory ``run_dir/checkpoints/step-N/`` holding:

- ``trainable.safetensors``  the trainable parameters only (LoRA or whatever the trainer optimises)
- ``optimizer.pt``, ``scheduler.pt``, ``ema.pt``  the ``state_dict()`` of each object that was given
- ``rng.pt``  python ``random``, numpy, torch CPU, torch CUDA (all devices) and named ``torch.Generator`` states,
  one entry per process so a multi-process run resumes each process's streams
- ``state.json``  step, data position, wall time, metrics summary and any extra JSON the trainer adds
- ``config.yaml``  the resolved run config
- ``COMPLETE``  written last; a directory without it is not a checkpoint

Everything is written into ``checkpoints/.tmp-step-N-<random>/``, fsynced, and renamed to ``step-N`` in one
``os.replace``; a crash at any point leaves either the old set of checkpoints or the new one. "latest" is found by
scanning for complete ``step-N`` directories (no symlinks, which break when a run directory is copied).

Multi-process (accelerate): call ``save_checkpoint``/``load_checkpoint`` on every process. RNG states are gathered
from all processes. Data parallel: weights and optimizer state are replicated, so the main process writes them.
Sharded (FSDP2, the trainable module's parameters are DTensors): instead of ``trainable.safetensors``,
``optimizer.pt``, ``ema.pt`` and the stateful objects' files, every process writes its own shards of all of them into
``sharded/`` with ``torch.distributed.checkpoint``; the main process writes the rest and renames the directory as
above. ``torch.distributed.checkpoint`` reshards on load, so a sharded checkpoint resumes on any number of processes,
sharded (another mesh, hybrid or not) or whole (one process, data parallel). A run resumed on a number of processes
other than the saved one restores on process r the RNG streams saved by process r mod the saved number.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from drf.errors import DRFError, InputError
from drf.run_dir import RunDir

COMPLETE_MARKER = "COMPLETE"
TRAINABLE_FILE = "trainable.safetensors"
SHARDED_DIR = "sharded"
STATE_FILE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_LEFTOVER_PREFIXES = (".tmp-", ".old-")


class TrainingDiverged(DRFError):
    """The loss or gradients stayed non-finite for too many consecutive steps."""


# ----------------------------------------------------------------------------------------------------------------
# finding checkpoints


def checkpoint_dir(run_dir: str | os.PathLike, step: int) -> Path:
    return RunDir(run_dir).checkpoint(step)


def is_checkpoint(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / COMPLETE_MARKER).is_file()


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as ``(step, path)``, oldest first; half-written directories are skipped."""
    root = RunDir(run_dir).checkpoints
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and is_checkpoint(child):
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def is_good(path: Path) -> bool:
    """Whether a checkpoint was saved after a finite step with finite weights (``state.json``'s ``good``; older
    checkpoints without the flag count as good)."""
    try:
        return bool(read_state(path).get("good", True))
    except (OSError, ValueError):
        return False


def latest_good_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint a diverged run can go back to (see :func:`is_good`), or None."""
    good = [path for _, path in list_checkpoints(run_dir) if is_good(path)]
    return good[-1] if good else None


def describe_dir(path: str | os.PathLike, limit: int = 8) -> str:
    """What a folder holds, for one-line messages: "it contains: a, b/, ..." or "it is empty"."""
    path = Path(path)
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not names:
        return "it is empty"
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    return f"it contains: {shown}"


def resolve_resume(run_dir: str | os.PathLike, spec: str | os.PathLike) -> Path:
    """Turn ``--resume latest|PATH`` into a checkpoint directory, or fail with a one-line reason."""
    if str(spec) == "latest":
        latest = latest_checkpoint(run_dir)
        if latest is not None:
            return latest
        root = RunDir(run_dir).checkpoints
        what = describe_dir(root) if root.is_dir() else "the directory does not exist"
        raise InputError(
            f"--resume latest: nothing to resume, no complete checkpoint in {root} ({what}); start the run with the "
            "same command without --resume (a start that stopped before its first checkpoint is discarded)"
        )
    path = Path(spec)
    if not path.exists():
        raise InputError(f"--resume {path}: no such file or directory; pass 'latest' or a checkpoints/step-N directory")
    if not path.is_dir():
        raise InputError(f"--resume {path}: is a file, not a checkpoint directory; pass a checkpoints/step-N directory")
    if is_checkpoint(path):
        return path
    if RunDir(path).checkpoints.is_dir():
        hint = f"it looks like a run directory; pass {RunDir(path).checkpoints}/step-N or 'latest'"
    elif path.name == RunDir.CHECKPOINTS:
        hint = f"{describe_dir(path)}; pass one of its step-N directories"
    else:
        hint = f"{describe_dir(path)}; a checkpoint has a {COMPLETE_MARKER} marker written after all its files"
    raise InputError(f"--resume {path}: not a complete checkpoint ({hint})")


# ----------------------------------------------------------------------------------------------------------------
# RNG states


def _capture_rng(generators: Mapping[str, torch.Generator] | None) -> dict[str, Any]:
    """All random streams of this process, stored as tensors/tuples so ``torch.load(weights_only=True)`` reads them."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
        "generators": {name: gen.get_state() for name, gen in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None, where: Path, same_layout: bool
) -> None:
    """``same_layout``: resumed by as many processes as saved it; otherwise the CUDA streams of the devices both
    layouts have are restored (a machine with fewer GPUs than the saved one's is then no error)."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        if not same_layout:
            saved = saved[: torch.cuda.device_count()]
            for device, cuda_state in enumerate(saved):
                torch.cuda.set_rng_state(cuda_state, device)
        elif len(saved) != torch.cuda.device_count():
            raise InputError(
                f"{where}: saved CUDA RNG for {len(saved)} devices but {torch.cuda.device_count()} are visible; "
                "resume with the same devices"
            )
        else:
            torch.cuda.set_rng_state_all(saved)
    for name, gen in (generators or {}).items():
        if name not in state["generators"]:
            raise InputError(
                f"{where}: no saved state for generator '{name}' (saved: {sorted(state['generators']) or 'none'})"
            )
        gen.set_state(state["generators"][name])


def _gather_rng(state: dict[str, Any], accelerator: Any) -> list[dict[str, Any]]:
    """Every process's RNG state, in process order. States travel as ``torch.save`` bytes: pickling tensors
    directly through ``all_gather_object`` fails to unpickle on the receiving side."""
    if accelerator is None or accelerator.num_processes == 1:
        return [state]
    from accelerate.utils import gather_object

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return [torch.load(io.BytesIO(blob), weights_only=True) for blob in gather_object([buffer.getvalue()])]


# ----------------------------------------------------------------------------------------------------------------
# saving


def trainable_state_dict(module: torch.nn.Module, accelerator: Any = None) -> dict[str, torch.Tensor]:
    """The parameters that require grad, keyed by their name in the (unwrapped) module."""
    if accelerator is not None:
        module = accelerator.unwrap_model(module)
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _write_files(
    tmp: Path,
    step: int,
    trainable: Mapping[str, torch.Tensor] | None,
    optimizer: Any,
    lr_scheduler: Any,
    stateful: Mapping[str, Any],
    rng_per_process: list[dict[str, Any]],
    data_state: Mapping[str, Any],
    config_yaml: str,
    metrics: Mapping[str, float] | None,
    extra: Mapping[str, Any] | None,
    finite_step: bool,
) -> None:
    # safetensors refuses shared or strided storage; a contiguous CPU copy is bit-identical.
    if trainable is not None:
        save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in trainable.items()}, tmp / TRAINABLE_FILE)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if lr_scheduler is not None:
        torch.save(lr_scheduler.state_dict(), tmp / "scheduler.pt")
    for name, obj in stateful.items():
        if obj is not None:
            torch.save(obj.state_dict(), tmp / f"{name}.pt")
    torch.save(rng_per_process, tmp / "rng.pt")
    state = {
        "step": step,
        "good": finite_step and all(bool(torch.isfinite(v).all()) for v in (trainable or {}).values()),
        "data_state": dict(data_state),
        "time": time.time(),
        "metrics": dict(metrics or {}),
        "extra": dict(extra or {}),
    }
    _write_text(tmp / STATE_FILE, json.dumps(state, indent=2, sort_keys=True))
    _write_text(tmp / RunDir.CONFIG, config_yaml)
    for child in tmp.rglob("*"):
        if child.is_file():
            _fsync_file(child)
    _write_text(tmp / COMPLETE_MARKER, f"step {step}\n")
    _fsync_file(tmp / COMPLETE_MARKER)
    _fsync_dir(tmp)


def _remove_leftovers(root: Path) -> None:
    """Delete temp dirs of writes that crashed; only the main process writes, so none is in progress."""
    for child in root.iterdir():
        if child.is_dir() and child.name.startswith(_LEFTOVER_PREFIXES):
            shutil.rmtree(child, ignore_errors=True)


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int | None, *, protect: Path | None = None) -> list[Path]:
    """Delete all but the ``keep_last`` newest complete checkpoints (``None`` keeps all).

    ``protect`` (the checkpoint just written) survives even when it is older than those, as when a run resumed from
    an earlier step writes below the checkpoints of the run it replaces; so does the newest good checkpoint, so that
    a run diverging over several saves still has one to go back to.
    """
    if keep_last is None:
        return []
    found = [path for _, path in list_checkpoints(run_dir)]
    kept = {protect, latest_good_checkpoint(run_dir)}
    doomed = [p for p in found[: max(len(found) - keep_last, 0)] if p not in kept]
    for path in doomed:
        # Rename first so a crash mid-delete leaves a leftover, not a step-N dir missing files.
        aside = path.with_name(f".old-{path.name}-{uuid.uuid4().hex[:8]}")
        os.replace(path, aside)
        shutil.rmtree(aside, ignore_errors=True)
    return doomed


def is_sharded(module: torch.nn.Module) -> bool:
    """Whether ``module``'s parameters are sharded over processes (FSDP2 turns them into DTensors)."""
    return any(hasattr(p, "device_mesh") for p in module.parameters())


def _sharded_state(module: torch.nn.Module, optimizer: Any, objects: Mapping[str, Any]) -> dict[str, Any]:
    """What a sharded checkpoint holds, as live shards: the trainable parameters, the optimizer state (keyed by
    parameter name, so it reshards) and each object's ``state_dict()``."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(ignore_frozen_params=True)
    weights, optim = get_state_dict(module, [] if optimizer is None else [optimizer], options=options)
    state = {"trainable": weights, **({"optimizer": optim} if optimizer is not None else {})}
    state.update({name: obj.state_dict() for name, obj in objects.items() if obj is not None})
    return state


def _agreed_path(path: Path | None) -> Path:
    """The main process's ``path`` on every process (they all write into the directory it made)."""
    from accelerate.utils import broadcast_object_list

    return Path(broadcast_object_list([str(path) if path is not None else None])[0])


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    trainable: Mapping[str, torch.Tensor],
    optimizer: Any,
    lr_scheduler: Any = None,
    ema: Any = None,
    data_state: Mapping[str, Any],
    config_yaml: str,
    metrics: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    keep_last: int | None,
    generators: Mapping[str, torch.Generator] | None = None,
    accelerator: Any = None,
    finite_step: bool = True,
    stateful: Mapping[str, Any] | None = None,
    module: torch.nn.Module | None = None,
) -> Path:
    """Write ``run_dir/checkpoints/step-<step>/`` atomically and prune to ``keep_last``; returns its path.

    ``trainable``: the trainable parameters only (see ``trainable_state_dict``). ``data_state``, ``metrics`` and
    ``extra`` must be JSON-serialisable. ``generators``: named ``torch.Generator`` objects whose streams the run
    depends on (e.g. the sampling noise generator). With an ``accelerator``, call on every process; all processes
    return after the checkpoint is complete. ``finite_step``: whether the step just taken was finite (a checkpoint
    written on a skipped step, or with non-finite weights, is not one a diverged run is sent back to). ``stateful``:
    more named objects with ``state_dict()`` a recipe carries (e.g. DiffusionNFT's old policy), each as ``<name>.pt``.
    ``module``: the module ``trainable`` comes from; when it is sharded, everything with shards goes to ``sharded/``
    (see the module docstring).
    """
    if keep_last is not None and keep_last < 1:
        raise InputError(f"checkpoint keep_last={keep_last}: must be at least 1 (or null to keep every checkpoint)")
    rng = _gather_rng(_capture_rng(generators), accelerator)
    final = checkpoint_dir(run_dir, step)
    main = accelerator is None or accelerator.is_main_process
    objects = {"ema": ema, **(stateful or {})}
    tmp = None
    if main:
        root = final.parent
        root.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(root)
        tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    if module is not None and is_sharded(module):
        import torch.distributed.checkpoint as dcp

        tmp = _agreed_path(tmp)
        dcp.save(_sharded_state(module, optimizer, objects), checkpoint_id=tmp / SHARDED_DIR)
        trainable, optimizer, objects = None, None, {}
        accelerator.wait_for_everyone()
    if main:
        try:
            _write_files(
                tmp, step, trainable, optimizer, lr_scheduler, objects, rng, data_state,
                config_yaml, metrics, extra, finite_step,
            )
            if final.exists():
                # A resumed run writing a step it had already written: move the old one aside (os.replace cannot
                # overwrite a non-empty directory), swap, then delete.
                aside = root / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
                os.replace(final, aside)
                os.replace(tmp, final)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(tmp, final)
            _fsync_dir(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        prune_checkpoints(run_dir, keep_last, protect=final)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return final


# ----------------------------------------------------------------------------------------------------------------
# loading


def _check_keys(saved: Mapping[str, Any], expected: Mapping[str, Any], where: Path) -> None:
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    if missing:
        raise InputError(
            f"{where / TRAINABLE_FILE}: missing trainable key '{missing[0]}' ({len(missing)} missing in all); "
            "the model's trainable parameters differ from the checkpoint's (different LoRA rank/targets?)"
        )
    if unexpected:
        raise InputError(
            f"{where / TRAINABLE_FILE}: unexpected trainable key '{unexpected[0]}' ({len(unexpected)} unexpected "
            "in all); the model's trainable parameters differ from the checkpoint's (different LoRA rank/targets?)"
        )
    for key, value in expected.items():
        if tuple(saved[key].shape) != tuple(value.shape):
            raise InputError(
                f"{where / TRAINABLE_FILE}: '{key}' has shape {tuple(saved[key].shape)} in the checkpoint but "
                f"{tuple(value.shape)} in the model"
            )


def _load_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    trainable_module_or_setter: torch.nn.Module | Callable[[dict[str, torch.Tensor]], None],
    optimizer: Any = None,
    lr_scheduler: Any = None,
    ema: Any = None,
    generators: Mapping[str, torch.Generator] | None = None,
    accelerator: Any = None,
    stateful: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Restore a checkpoint in place and return its ``state.json`` (plus ``config_yaml`` and ``path``).

    ``trainable_module_or_setter``: a module whose ``requires_grad`` parameters receive the saved tensors (keys must
    match exactly), or a callable that takes the saved ``{name: tensor}`` dict and installs it itself. Objects passed
    as ``None`` are not restored; ``stateful`` as in ``save_checkpoint``. RNG states are always restored, so call this
    last before training continues.
    """
    path = Path(path)
    if not is_checkpoint(path):
        raise InputError(f"{path}: not a complete checkpoint (no {COMPLETE_MARKER} marker); see --resume latest")
    module = trainable_module_or_setter if isinstance(trainable_module_or_setter, torch.nn.Module) else None
    objects = {"ema": ema, **(stateful or {})}
    saved_sharded = (path / SHARDED_DIR).is_dir()
    if module is None and saved_sharded:
        raise InputError(f"{path}: saved sharded (an FSDP launch); its weights load into the model, not as a file")
    if module is not None and is_sharded(module) and not saved_sharded:
        raise InputError(
            f"{path}: saved unsharded (one process or data parallel); resume it without an FSDP config, on any "
            "number of processes"
        )
    if saved_sharded:
        _load_sharded(path, module, optimizer, objects)
        optimizer, objects = None, {}
    elif isinstance(trainable_module_or_setter, torch.nn.Module):
        saved = load_file(path / TRAINABLE_FILE)
        module = trainable_module_or_setter
        if accelerator is not None:
            module = accelerator.unwrap_model(module)
        params = {name: p for name, p in module.named_parameters() if p.requires_grad}
        _check_keys(saved, params, path)
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(saved[name])
    else:
        trainable_module_or_setter(load_file(path / TRAINABLE_FILE))
    named = [(optimizer, "optimizer.pt"), (lr_scheduler, "scheduler.pt")]
    named += [(obj, f"{name}.pt") for name, obj in objects.items()]
    for obj, filename in named:
        if obj is None:
            continue
        if not (path / filename).is_file():
            raise InputError(f"{path}: has no {filename}, but the run has one to restore; was it saved without it?")
        obj.load_state_dict(_load_torch(path / filename))
    rng = _load_torch(path / "rng.pt")
    rank, processes = (0, 1) if accelerator is None else (accelerator.process_index, accelerator.num_processes)
    _restore_rng(rng[rank % len(rng)], generators, path, same_layout=len(rng) == processes)
    state = read_state(path)
    state["config_yaml"] = (path / RunDir.CONFIG).read_text(encoding="utf-8")
    state["path"] = str(path)
    return state


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's ``state.json``: step, data position and batch layout, metrics, the trainer's extra state."""
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def _load_sharded(path: Path, module: torch.nn.Module, optimizer: Any, objects: Mapping[str, Any]) -> None:
    """Restore ``sharded/`` into the live module, optimizer and objects: each process reads the part it holds, its
    shards under any FSDP layout or the whole tensors when the module is not sharded."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    state = _sharded_state(module, optimizer, objects)
    try:
        dcp.load(state, checkpoint_id=path / SHARDED_DIR)
    except (CheckpointException, ValueError, RuntimeError) as err:  # a missing key or a differing shape; DCP
        # wraps each process's error in one CheckpointException whose last line is the first process's cause
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise InputError(
            f"{path / SHARDED_DIR}: {lines[-1] if lines else type(err).__name__}; the model's trainable parameters "
            "differ from the checkpoint's (different LoRA rank/targets?)"
        ) from None
    set_state_dict(
        module, [] if optimizer is None else [optimizer], model_state_dict=state["trainable"],
        optim_state_dict=state.get("optimizer", {}),
        options=StateDictOptions(ignore_frozen_params=True, strict=False),  # the frozen base is not in it
    )  # fmt: skip
    for name, obj in objects.items():
        if obj is not None:
            obj.load_state_dict(state[name])


# ----------------------------------------------------------------------------------------------------------------
# non-finite guard


class NonFiniteGuard:
    """Counts consecutive skipped (non-finite) steps and stops the run, naming the last good checkpoint."""

    def __init__(self, run_dir: str | os.PathLike, max_consecutive: int) -> None:
        self.run_dir = Path(run_dir)
        self.max_consecutive = max_consecutive
        self.consecutive = 0

    def update(self, step: int, finite: bool) -> None:
        """Call once per optimiser step; raises ``TrainingDiverged`` after ``max_consecutive`` bad steps in a row."""
        self.consecutive = 0 if finite else self.consecutive + 1
        if self.consecutive < self.max_consecutive:
            return
        last = latest_good_checkpoint(self.run_dir)
        where = (
            f"last good checkpoint: {last} (saved after a finite step, with finite weights; resume with --resume {last})"
            if last
            else "no checkpoint was saved after a finite step with finite weights"
        )
        raise TrainingDiverged(
            f"step {step}: loss or gradients non-finite for {self.consecutive} consecutive steps, stopping; {where}; "
            "try a lower learning rate or gradient clipping"
        )
