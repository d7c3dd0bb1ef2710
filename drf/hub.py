"""Where a model comes from: a local folder, a hub id in the local Hugging Face cache, or the hub; checked before any
loader is called.

A loader handed a missing folder reports a malformed repo id, and one handed a hub id on a machine without network
retries for half a minute before blaming a missing file; both get a one-line reason here instead, at once (one TCP
connection attempt to the hub, a few seconds at most, tells whether it can be reached). Offline, a hub id resolves to
its snapshot in the cache (``HF_HUB_CACHE``, by default ``$HF_HOME/hub``) by huggingface_hub's own lookup, the one
diffusers and transformers make, so a cluster node with a pre-filled cache runs the shipped configs as they are.
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


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of ``repo_id``'s cached snapshot (the revision ``refs/main`` names), or None when it is not cached."""
    # Imported here for start-up speed: commands that never load a model (drf questions, drf --help) skip it.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError):  # not cached; ValueError: not a valid repo id
        return None


def hub_cache_dir() -> str:
    from huggingface_hub import constants  # start-up speed, as above

    return constants.HF_HUB_CACHE


def check_model_location(path: str, key: str, marker: str) -> Path | str:
    """``path`` as a local folder that holds ``marker`` (e.g. config.json); a hub id as itself when the hub is
    reachable, else as its snapshot folder in the local cache; otherwise a ``ModelLoadError`` naming ``key``, where
    drf looked and how to fill the cache."""
    if looks_local(path):
        folder = Path(path).expanduser()
        if not (folder / marker).is_file():
            what = "does not exist" if not folder.exists() else f"has no {marker}"
            raise ModelLoadError(f"{key} {path!r} {what}; give a local model folder or a hub id (owner/name)")
        return folder
    offline = hub_offline()
    if not offline and hub_reachable():
        return path
    snapshot = cached_snapshot(path)
    if snapshot is not None:
        if not (snapshot / marker).is_file():
            raise ModelLoadError(f"{key} {path!r}: its cached snapshot {snapshot} has no {marker}; download the "
                                 f"whole repository into the cache (hf download {path})")  # fmt: skip
        return snapshot
    why = "the hub is offline here (HF_HUB_OFFLINE)" if offline else "the hub cannot be reached from here"
    raise ModelLoadError(
        f"{key} {path!r} is a hub id, but {why} and it is not in the local Hugging Face cache {hub_cache_dir()}; "
        f"fill the cache on a machine that reaches the hub (hf download {path}, with the same HF_HOME or "
        "HF_HUB_CACHE) or point at a local model folder"
    )


def model_folder(path: str, key: str, marker: str) -> Path:
    """``check_model_location`` for a loader that reads the files itself: a hub id the hub serves is downloaded into
    the cache first (as ``from_pretrained`` would), so the answer is always a local folder."""
    found = check_model_location(path, key, marker)
    if isinstance(found, Path):
        return found
    from huggingface_hub import snapshot_download  # start-up speed, as above

    return Path(snapshot_download(found))
