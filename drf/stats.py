"""Means: with their standard errors, as every held-out figure in drf is reported, and of metric records."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than two values; NaN for none)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def metric_means(records: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each finite metric over ``records`` (micro-batches or videos; keys may differ between them)."""
    summed: dict[str, float] = {}
    counts: dict[str, int] = {}
    for metrics in records:
        for key, value in metrics.items():
            if math.isfinite(value):
                summed[key] = summed.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
    return {key: summed[key] / counts[key] for key in summed}
