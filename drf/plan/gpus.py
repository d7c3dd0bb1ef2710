"""How much memory a GPU gives a training process: by name, or as written (``80GB``, ``79.6GiB``, ``81559MiB``)."""

from __future__ import annotations

import re

from drf.errors import ConfigError

MIB = 2**20
GIB = 2**30

# Total memory as ``nvidia-smi`` reports it, in MiB.
GPUS = {
    "a10g": 23028,
    "l4": 23034,
    "rtx4090": 24564,
    "a100-40gb": 40960,
    "l40s": 46068,
    "rtx6000-ada": 49140,
    "a100-80gb": 81920,
    "h100": 81559,
    "h200": 143771,
    "b200": 183359,
}

# What the CUDA context, cuBLAS/cuDNN workspaces and the caching allocator's rounding take before a tensor is made.
RESERVED = int(1.5 * GIB)

UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": MIB,
    "gib": GIB,
    "tib": 2**40,
}


def gpu_memory(gpu: str | None = None, memory: str | None = None) -> tuple[str, int]:
    """-> (description, total bytes) for ``--gpu NAME`` or ``--gpu-memory SIZE`` (exactly one of them)."""
    if memory is not None:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", memory)
        unit = (match.group(2).lower() if match else "") or "gb"
        if not match or unit not in UNITS:
            raise ConfigError(f"--gpu-memory {memory!r}: give a size such as 80GB, 79.6GiB or 81559MiB")
        return memory.strip(), int(float(match.group(1)) * UNITS[unit])
    name = (gpu or "h100").lower()
    if name not in GPUS:
        raise ConfigError(
            f"--gpu {gpu!r} is not a GPU drf plan knows; choose one of {', '.join(GPUS)} or give --gpu-memory 48GB"
        )
    return f"{name} ({GPUS[name] / 1024:.1f} GiB)", GPUS[name] * MIB
