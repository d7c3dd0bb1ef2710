"""Where a model comes from: a local folder or a hub id, checked before any loader is called.

A loader handed a missing folder reports a malformed repo id, and one handed a hub id on a machine without network
retries for half a minute before blaming a missing file; both get a one-line reason here instead, at once (one TCP
connection attempt to the hub, a few seconds at most, tells whether it can be reached).
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

from drf.errors import ModelLoadError


def looks_local(path: str) -> bool:
    """Hub ids are exactly ``owner/name``; anything else (or anything that exists on disk) is a local path."""
    return path.startswith((".", "/", "~")) or path.count("/") != 1 or Path(path).expanduser().exists()


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds (``HF_ENDPOINT`` or huggingface.co)."""
    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_model_location(path: str, key: str, marker: str) -> Path | str:
    """``path`` as a local folder that holds ``marker`` (e.g. config.json), or as a hub id when the hub is reachable;
    otherwise a ``ModelLoadError`` naming ``key``."""
    if looks_local(path):
        folder = Path(path).expanduser()
        if not (folder / marker).is_file():
            what = "does not exist" if not folder.exists() else f"has no {marker}"
            raise ModelLoadError(f"{key} {path!r} {what}; give a local model folder or a hub id (owner/name)")
        return folder
    offline = hub_offline()
    if offline or not hub_reachable():
        why = "the hub is offline here (HF_HUB_OFFLINE)" if offline else "the hub cannot be reached from here"
        raise ModelLoadError(
            f"{key} {path!r} is a hub id, but {why}; the model must be a local folder: download it elsewhere and "
            "point at the folder"
        )
    return path
