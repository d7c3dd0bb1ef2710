"""Inline SVG line charts, so a report draws its training curves without a plotting library or external assets.

The SVG carries no ``xmlns`` URL: inline ``<svg>`` in HTML5 needs none, and the report promises no URLs at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#111111", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def _tick_step(low: float, high: float, count: int = 5) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about ``count`` ticks over [low, high]."""
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values inside [low, high]."""
    if high <= low:
        return [low]
    step = _tick_step(low, high, count)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks or [low]


def _label(value: float) -> str:
    return f"{value + 0.0:.4g}"  # no "-0"


def _finite_points(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points if math.isfinite(float(x)) and math.isfinite(float(y))]


def _segments(points: Sequence[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """Split a series at non-finite values, so a NaN shows as a gap rather than a line through it."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if math.isfinite(float(x)) and math.isfinite(float(y)):
            runs[-1].append((float(x), float(y)))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str = "",
    x_label: str = "step",
    width: int = 560,
    height: int = 280,
) -> str:
    """An ``<svg>`` element plotting each named series of (x, y) points; empty series are listed but not drawn."""
    left, right, top, bottom = 64, 150, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = [p for points in series.values() for p in _finite_points(points)]
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    if title:
        parts.append(f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>')
    if not finite:
        parts.append(f'<text x="{left}" y="{top + plot_h / 2:.1f}" font-size="12">no finite values logged</text>')
        parts.append("</svg>")
        return "".join(parts)
    xs, ys = [p[0] for p in finite], [p[1] for p in finite]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    if y_high == y_low:
        pad = abs(y_low) * 0.1 or 1.0
        y_low, y_high = y_low - pad, y_high + pad
    y_step = _tick_step(y_low, y_high)  # widen the y range to whole ticks so both ends are labelled
    y_low, y_high = math.floor(y_low / y_step) * y_step, math.ceil(y_high / y_step) * y_step

    def px(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999" stroke-width="1"/>'
    )
    for tick in _ticks(y_low, y_high):
        y = py(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_label(tick)}</text>')
    for tick in _ticks(x_low, x_high):
        x = px(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="#999"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" font-size="10" text-anchor="middle">{_label(tick)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">{escape(x_label)}</text>'
    )
    for index, (name, points) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        for run in _segments(points):
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in run)
            if len(run) == 1:
                parts.append(f'<circle cx="{px(run[0][0]):.1f}" cy="{py(run[0][1]):.1f}" r="2.5" fill="{colour}"/>')
            else:
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        ly = top + 12 + 16 * index
        lx = left + plot_w + 12
        parts.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 18}" y2="{ly - 4}" stroke="{colour}" stroke-width="3"/>')
        parts.append(f'<text x="{lx + 24}" y="{ly}" font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
