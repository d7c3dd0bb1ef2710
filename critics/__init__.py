"""Frozen VLM critics that answer questions about decoded frames with gradient-carrying log-probabilities.

``load_critic(CriticConfig(...))`` is the entry point; it is imported lazily so ``drf --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_critic"]


def __getattr__(name: str) -> Any:
    if name == "load_critic":
        from critics.registry import load_critic  # lazy: `drf --help` imports this package
        return load_critic
    raise AttributeError(f"module 'critics' has no attribute {name!r}")
