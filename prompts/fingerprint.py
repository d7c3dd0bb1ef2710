"""A decomposition's fingerprint: equal fingerprints mean the same questions for the same prompt.

It hashes every config field that changes the questions together with the inputs a decomposer reads outside the
config (its templates, its question file, ...), which each decomposer names for itself; the question cache keys on it,
so editing a template or a question file invalidates exactly the decompositions that read it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from drf.digest import sha256_file
from prompts.config import QuestionsConfig


def fingerprint(config: QuestionsConfig, inputs: Mapping[str, str]) -> str:
    """First 12 hex digits of sha256 over the config (less ``cache``, which changes no question) and ``inputs``."""
    data = asdict(config)
    data.pop("cache")
    data["inputs"] = dict(inputs)
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes ("" for a missing file, which the decomposer itself reports)."""
    return sha256_file(path) if Path(path).is_file() else ""
