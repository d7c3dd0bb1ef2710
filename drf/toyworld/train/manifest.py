"""Write a trained model's entry into the toy-world asset manifest (files with sha256 and size, provenance, metrics)."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from drf.digest import sha256_file
from drf.toyworld.assets import MANIFEST, load_manifest


def command_line() -> str:
    """The command that is running, as a person would retype it (``drf toyworld train ...``)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("drf", "__main__.py", "cli.py"):
        argv[0] = "drf"
    return shlex.join(argv)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def file_entries(root: Path, directory: Path, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """{path relative to root: {sha256, bytes}} for every file under ``directory`` outside the ``exclude`` subfolders."""
    entries = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        inner = path.relative_to(directory).parts
        if inner and inner[0] in exclude:
            continue
        entries[path.relative_to(root).as_posix()] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return entries


def record(root: Path, name: str, directory: Path, info: dict[str, Any], exclude: tuple[str, ...] = ()) -> Path:
    """Set the entry ``name`` of ``root``'s manifest (the shipped asset folder or a training ``--out``) for the files
    under ``directory``."""
    root = Path(root)
    manifest = load_manifest(root)
    manifest.setdefault("models", {})[name] = {"files": file_entries(root, Path(directory), exclude), **info}
    path = root / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def set_fields(root: Path, name: str, **fields: Any) -> Path:
    """Add ``fields`` to the entry ``name`` of ``root``'s manifest (e.g. gate figures measured after training),
    leaving its files and provenance as they are."""
    root = Path(root)
    manifest = load_manifest(root)
    manifest["models"][name].update(fields)
    path = root / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def previous_entry(root: Path, name: str) -> dict[str, Any] | None:
    """The manifest entry a continued run starts from (without its file list), or None."""
    entry = load_manifest(Path(root)).get("models", {}).get(name)
    return None if entry is None else {k: v for k, v in entry.items() if k != "files"}


def continued(info: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """``info`` of a run that continued ``previous``: the earlier stages are kept, and the totals cover them all."""
    stages = [*previous.pop("previous_stages", []), previous]
    return {
        **info,
        "previous_stages": stages,
        "total_train_seconds": round(sum(s.get("train_seconds", 0.0) for s in stages) + info["train_seconds"], 1),
        "total_cpu_seconds": round(sum(s.get("cpu_seconds", 0.0) for s in stages) + info.get("cpu_seconds", 0.0), 1),
        "total_steps": sum(s.get("steps", 0) for s in stages) + info["steps"],
    }
