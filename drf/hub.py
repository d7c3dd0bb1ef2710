"""Where a model comes from: a local folder or a hub id, checked before any loader is called.

A loader handed a missing folder reports a malformed repo id, and one handed a hub id on a machine without network
retries for half a minute before blaming a missing file; both get a one-line reason here instead, at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from drf.errors import ModelLoadError


def looks_local(path: str) -> bool:
    """Hub ids are exactly ``owner/name``; anything else (or anything that exists on disk) is a local path."""
    return path.startswith((".", "/", "~")) or path.count("/") != 1 or Path(path).expanduser().exists()


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_model_location(path: str, key: str, marker: str) -> Path | str:
    """``path`` as a local folder that holds ``marker`` (e.g. config.json), or as a hub id when the hub is reachable;
    otherwise a ``ModelLoadError`` naming ``key``."""
    if looks_local(path):
        folder = Path(path).expanduser()
        if not (folder / marker).is_file():
            what = "does not exist" if not folder.exists() else f"has no {marker}"
            raise ModelLoadError(f"{key} {path!r} {what}; give a local model folder or a hub id (owner/name)")
        return folder
    if hub_offline():
        raise ModelLoadError(
            f"{key} {path!r} is a hub id, but the hub is offline here (HF_HUB_OFFLINE); the model must be a local "
            "folder: download it elsewhere and point at the folder"
        )
    return path
