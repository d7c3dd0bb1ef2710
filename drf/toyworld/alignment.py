"""Oracle alignment over a set of videos: the figures every toy-world gate and report quotes.

Each video is judged against its prompt's rule questions by :func:`drf.toyworld.oracle.alignment`; this module
averages them (with the standard error over videos, since videos are the sampling unit), per aspect, and counts how
many of the prompts' objects the oracle finds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drf.stats import mean_and_se
from drf.toyworld.oracle import alignment
from prompts.registry import decompose


def _positive_object_ids(questions: Sequence[Any]) -> set[str]:
    return {q.id for q in questions if q.id.startswith("align.object.") and str(q.expected) == "yes"}


def alignment_summary(facts: Sequence[Any], prompts: Sequence[str]) -> dict[str, Any]:
    """Oracle alignment of videos (their measured ``facts``, each against its prompt's questions): the mean over
    videos with its standard error, the mean per aspect, and ``object_present``, the share of the prompts' objects
    that the oracle finds."""
    means, present = [], []
    by_aspect: dict[str, list[float]] = {}
    for video_facts, prompt in zip(facts, prompts):
        questions = list(decompose(prompt))
        result = alignment(video_facts, questions)
        if result["mean"] is None:
            continue
        means.append(result["mean"])
        for aspect, value in result["by_aspect"].items():
            by_aspect.setdefault(aspect, []).append(value)
        present.extend(result["scores"][i] for i in _positive_object_ids(questions))
    mean, se = mean_and_se(means)
    return {
        "alignment": round(mean, 4),
        "alignment_se": round(se, 4),
        "object_present": round(sum(present) / max(1, len(present)), 4),
        "by_aspect": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_aspect.items())},
        "videos": len(means),
    }


def found_by(facts: Sequence[Any], prompts: Sequence[str], key: str) -> dict[str, float]:
    """Share of the prompts' objects the oracle finds, per value of ``key`` ("color" or "shape") of the object."""
    hits: dict[str, list[int]] = {}
    for video_facts, prompt in zip(facts, prompts):
        questions = list(decompose(prompt))
        wanted = _positive_object_ids(questions)
        scores = alignment(video_facts, questions)["scores"]
        for q in questions:
            value = q.slots.get(key) if q.id in wanted else None
            if value is not None:
                hits.setdefault(value, []).append(scores[q.id])
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(hits.items())}
