"""Inline SVG charts: valid markup, one line per series, gaps at NaN, no URLs."""

from __future__ import annotations

import math

from drf.report.svg import line_chart
from tests.report.htmlcheck import parse_html


def test_chart_draws_one_polyline_per_series_with_a_legend_entry():
    svg = line_chart({"total": [(0, -1.0), (1, -0.5), (2, -0.2)], "alignment": [(0, -2.0), (2, -1.0)]}, title="r")
    parsed = parse_html(svg)
    assert parsed.tags.count("polyline") == 2
    assert "total" in parsed.text and "alignment" in parsed.text


def test_nan_values_split_a_line_into_segments():
    svg = line_chart({"quality": [(0, 1.0), (1, 2.0), (2, math.nan), (3, 1.5), (4, 1.0)]})
    assert parse_html(svg).tags.count("polyline") == 2


def test_chart_without_finite_values_says_so_and_has_no_urls():
    svg = line_chart({"total": [(0, math.nan)]}, title="empty")
    assert "no finite values logged" in svg
    assert "http" not in line_chart({"total": [(0, 1.0), (5, 2.0)]})  # inline SVG in HTML needs no xmlns URL


def test_a_single_point_and_a_flat_series_still_render():
    parsed = parse_html(line_chart({"a": [(3, 0.5)], "b": [(0, 1.0), (1, 1.0)]}))
    assert parsed.tags.count("circle") == 1
    assert parsed.tags.count("polyline") == 1
