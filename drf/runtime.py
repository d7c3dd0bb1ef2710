"""How a drf process shares the CPU: OpenMP threads that sleep while they wait, and how many threads torch uses.

By default OpenMP worker threads spin while waiting for work; when another process keeps a core busy, the spinning
threads and the competitor take turns and every parallel region waits for the slowest. On the 2-core machine this
was measured 10-140x slower; with passive waiting the same step is within a small factor of running alone
(``bench/contention.py``). Passive waiting has to be chosen before torch loads OpenMP, so the CLI calls
:func:`wait_passively` first thing; a user's own ``OMP_WAIT_POLICY`` wins.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from drf.errors import invalid


def wait_passively() -> None:
    """Ask OpenMP to put idle threads to sleep instead of spinning (before ``import torch``; a user's choice wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def quiet_libraries() -> None:
    """Leave out the start-up chatter of the libraries drf loads (loading bars, info logs, an optional CPU kernel's
    warning) unless ``drf --verbose``; settings a user made in these variables win. Called before they are imported.
    drf's own training bar passes its ``disable`` explicitly, so ``TQDM_DISABLE`` does not hide it."""
    for name, value in (
        ("TQDM_DISABLE", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("DIFFUSERS_VERBOSITY", "error"),
    ):
        os.environ.setdefault(name, value)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when the user set it, else the cores this process may run on."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class RuntimeConfig:
    """How the process uses the CPU."""

    threads: int = field(
        default=0,
        metadata={"help": "Torch CPU threads; 0 = OMP_NUM_THREADS when set, else the cores this process may use."},
    )

    def validate(self) -> None:
        if self.threads < 0:
            raise invalid("threads", f"must be >= 0 (got {self.threads}); 0 picks the machine's cores")

    def apply(self) -> int:
        """Set torch's intra-op thread count; returns it."""
        import torch  # lazy: the config section is read by `drf config` without loading torch

        threads = self.threads or default_threads()
        torch.set_num_threads(threads)
        return threads
