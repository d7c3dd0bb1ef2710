"""What a run reports while it trains: a JSONL metrics file, optional TensorBoard, a progress bar, timings, memory.

``metrics.jsonl`` is the record the report and the benches read; one JSON object per line, ``{"step": N, "time":
unix_seconds, "<name>": value, ...}``, flushed after every line so a crashed run keeps all it logged.

Non-finite values: JSON has no NaN or Infinity, and silently writing ``null`` would hide a diverging run, so they are
written as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` — visible to a person reading the file, valid JSON for
every tool. ``read_metrics`` turns them back into floats.

In a multi-process run only the main process writes; reduce metrics across processes before logging them.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from drf.errors import InputError, invalid
from drf.run_dir import RunDir, sample_videos

log = logging.getLogger(__name__)

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _is_main(accelerator: Any) -> bool:
    return accelerator is None or accelerator.is_main_process


def _json_value(name: str, value: Any) -> Any:
    """A metric as a JSON value: tensors and numpy scalars become numbers, non-finite floats become strings."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric '{name}' is a tensor of shape {tuple(value.shape)}; log a scalar")
        value = value.detach().item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    raise ValueError(f"metric '{name}' has type {type(value).__name__}; log numbers, tensors, strings or bools")


def _from_json(record: dict[str, Any]) -> dict[str, Any]:
    return {k: _NON_FINITE.get(v, v) if isinstance(v, str) else v for k, v in record.items()}


def _parse_lines(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics file; a torn last line (the run died while writing it) is dropped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                log.warning("%s:%d: ignoring a torn last line (the run stopped while writing it)", path, number)
                break
            raise InputError(f"{path}:{number}: not a JSON metrics line ({err.msg}); fix or delete that line") from err
    return records


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (or of ``<run_dir>/metrics.jsonl``), with ``"nan"``/``"inf"`` as floats."""
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).metrics
    if not path.is_file():
        raise InputError(f"{path}: no metrics file; is this a run directory?")
    return [_from_json(r) for r in _parse_lines(path)]


TRACKERS = ("tensorboard", "wandb")


def tracker_available(name: str) -> bool:
    if name == "tensorboard":
        return find_spec("tensorboard") is not None or find_spec("tensorboardX") is not None
    return find_spec(name) is not None


class MetricsLogger:
    """Appends one JSON line per ``log`` call to ``run_dir/metrics.jsonl`` and forwards to the ``trackers`` named.

    ``resume_step``: when continuing from a checkpoint, lines the interrupted run logged after that step are dropped,
    so the file reads like one uninterrupted run. Trackers are accelerate's: ``tensorboard`` writes
    ``run_dir/tensorboard/<project_name>``; ``wandb`` logs to Weights & Biases (``WANDB_MODE=offline`` keeps it on
    disk under ``run_dir/wandb``) and also receives the eval videos (``log_videos``). A tracker whose package is
    missing is skipped with one warning, and the run goes on.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        accelerator: Any = None,
        trackers: Sequence[str] = (),
        project_name: str = "drf",
        resume_step: int | None = None,
    ) -> None:
        self.path = RunDir(run_dir).metrics
        self.enabled = _is_main(accelerator)
        self._file = None
        self._trackers: dict[str, Any] = {}
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        for name in trackers:
            tracker = self._start_tracker(name, Path(run_dir), project_name)
            if tracker is not None:
                self._trackers[name] = tracker

    def _truncate_after(self, step: int) -> None:
        kept = [r for r in _parse_lines(self.path) if r.get("step", -1) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    @staticmethod
    def _start_tracker(name: str, run_dir: Path, project_name: str) -> Any:
        if not tracker_available(name):
            log.warning(f"{name} is not installed; metrics go to metrics.jsonl only (pip install 'drf[{name}]')")
            return None
        from accelerate import PartialState

        PartialState()  # accelerate's trackers read the process state (shared with a running Accelerator)
        if name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            tracker = TensorBoardTracker(project_name, run_dir / "tensorboard")
        else:
            from accelerate.tracking import WandBTracker

            tracker = WandBTracker(project_name, dir=str(run_dir), name=run_dir.name)
        tracker.start()
        return tracker

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": round(time.time(), 3)}
        record.update({name: _json_value(name, value) for name, value in metrics.items()})
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        if self._trackers:
            values = _from_json({k: v for k, v in record.items() if k not in ("step", "time")})
            for tracker in self._trackers.values():
                tracker.log(values, step=step)

    def log_videos(self, step: int, folder: Path, fps: int = 8) -> None:
        """The videos of an evaluation's folder to the trackers that show video (wandb), one panel per file name;
        the folder is only listed when such a tracker runs."""
        tracker = self._trackers.get("wandb")
        paths = sample_videos(folder) if tracker is not None and folder.is_dir() else []
        if not paths:
            return
        import wandb

        tracker.log({f"samples/{path.stem}": wandb.Video(str(path), fps=fps) for path in paths}, step=step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for tracker in self._trackers.values():
            tracker.finish()
        self._trackers = {}

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Progress:
    """A tqdm bar over optimiser steps showing the latest reward and seconds per step."""

    def __init__(self, total: int, desc: str, *, enabled: bool, initial: int = 0) -> None:
        self._bar = tqdm(total=total, desc=desc, initial=initial, disable=not enabled, dynamic_ncols=True)
        self._step = initial
        self._last = time.perf_counter()

    def update(self, step: int, reward: float | torch.Tensor | None = None, **postfix: Any) -> None:
        """Move the bar to ``step``; extra keyword values are shown beside the reward."""
        now = time.perf_counter()
        seconds_per_step = (now - self._last) / max(step - self._step, 1)
        self._last = now
        shown = {}
        if reward is not None:
            shown["reward"] = f"{float(reward):.4f}"
        shown["s/step"] = f"{seconds_per_step:.2f}"
        shown.update({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in postfix.items()})
        self._bar.set_postfix(shown, refresh=False)
        self._bar.update(step - self._step)
        self._step = step

    @property
    def step(self) -> int:
        return self._step

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(total: int, desc: str, *, accelerator: Any = None, initial: int = 0) -> Progress:
    """A progress bar that only draws on the main process and on a terminal (logs of batch jobs stay clean)."""
    return Progress(total, desc, enabled=_is_main(accelerator) and sys.stderr.isatty(), initial=initial)


def peak_memory_mb(device: str | torch.device | None = None) -> float:
    """Peak memory in MiB: CUDA allocator peak for a CUDA device, else the process's peak resident set size."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class Timer:
    """Accumulates wall time per phase (``with timer("sampling"): ...``); phases may nest.

    On a CUDA device the clock is read after ``torch.cuda.synchronize`` so kernels launched in a phase are charged to
    it rather than to whichever phase next waits for them.
    """

    def __init__(self, device: str | torch.device | None = None, clock: Callable[[], float] = time.perf_counter):
        device = torch.device(device) if device is not None else None
        self._sync = device is not None and device.type == "cuda" and torch.cuda.is_available()
        self._device = device
        self._clock = clock
        self.totals: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def _now(self) -> float:
        if self._sync:
            torch.cuda.synchronize(self._device)
        return self._clock()

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = self._now()
        try:
            yield
        finally:
            self.totals[phase] += self._now() - start
            self.counts[phase] += 1

    def metrics(self, prefix: str = "time") -> dict[str, float]:
        """``{"<prefix>/<phase>": seconds}`` accumulated since the last ``reset``."""
        return {f"{prefix}/{phase}": total for phase, total in self.totals.items()}

    def reset(self) -> None:
        self.totals.clear()
        self.counts.clear()


@dataclass
class LoggingConfig:
    """Where a run writes and how often."""

    output_dir: str = field(
        default="runs", metadata={"path": "file", "help": "Parent directory of run directories (<dir>/<name>)."}
    )
    log_every: int = field(default=1, metadata={"help": "Write metrics every this many steps."})
    sample_every: int = field(default=0, metadata={"help": "Save sample videos every this many steps; 0 = never."})
    trackers: list[str] = field(
        default_factory=list,
        metadata={"help": "Also log to these accelerate trackers: tensorboard, wandb (each needs its extra; wandb also "
                  "gets the eval videos; WANDB_MODE=offline keeps it on disk)."},
    )  # fmt: skip
    video_format: Literal["gif", "mp4"] = field(default="gif", metadata={"help": "File format of saved videos."})
    fps: int = field(default=8, metadata={"help": "Frames per second of saved videos."})
    report: bool = field(
        default=True, metadata={"help": "Write report.html into the run directory when training ends."}
    )

    def validate(self) -> None:
        for key, low in (("log_every", 1), ("sample_every", 0), ("fps", 1)):
            if getattr(self, key) < low:
                raise invalid(key, f"must be >= {low} (got {getattr(self, key)})")
        unknown = [t for t in self.trackers if t not in TRACKERS]
        if unknown:
            raise invalid("trackers", f"has {unknown[0]!r}; choose from {', '.join(TRACKERS)}")
