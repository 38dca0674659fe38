"""Inline SVG bar charts, written by hand so the report needs no plotting library and no network.

One chart type serves every figure: horizontal bars, one row per bin or category and one bar per
dataset in each row, so datasets compare side by side. Bars are ``rect.bar`` elements; each carries
a ``<title>`` tooltip with its exact value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")

_BAR = 14  # height of one bar
_ROW_GAP = 8  # between rows
_PLOT_WIDTH = 380
_VALUE_ROOM = 64  # right of the longest bar, for its value label
_CHAR = 6.6  # approximate width of a 12px character, to size the label column
_LEGEND = 22
_AXIS = 26


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float]
    color_index: int  # the dataset's position on the page, so it keeps its colour in every chart


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _axis_max(largest: float) -> float:
    """A round upper end for the value axis whose quarters (the grid lines) are round too."""
    if largest <= 0:
        return 1.0
    if largest > 80:
        return 100.0
    magnitude = 10 ** math.floor(math.log10(largest))
    for step in (1, 2, 4, 6, 8):
        if largest <= step * magnitude:
            return float(step * magnitude)
    return 10.0 * magnitude


def _format(value: float) -> str:
    return f"{value:.2f}%"


def bar_chart(chart_id: str, title: str, rows: list[str], series: list[Series]) -> str:
    """An SVG chart of ``series`` (one per dataset, each with one percentage per row)."""
    label_width = 12 + _CHAR * max((len(r) for r in rows), default=4)
    legend_width = sum(40 + _CHAR * len(s.label) for s in series)
    width = int(label_width + max(_PLOT_WIDTH + _VALUE_ROOM, legend_width))
    row_height = len(series) * _BAR + _ROW_GAP
    top = _LEGEND + 6
    height = int(top + len(rows) * row_height + _AXIS)
    top_value = _axis_max(max((v for s in series for v in s.values), default=0.0))
    scale = _PLOT_WIDTH / top_value

    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
    ]
    x = label_width
    for s in series:  # legend
        parts.append(f'<rect class="legend" x="{x:.1f}" y="4" width="12" height="12" fill="{color(s.color_index)}"/>')
        parts.append(f'<text x="{x + 16:.1f}" y="14">{escape(s.label)}</text>')
        x += 40 + _CHAR * len(s.label)
    axis_y = top + len(rows) * row_height
    for k in range(5):  # grid and ticks at 0, 25, 50, 75, 100 % of the axis
        tick = top_value * k / 4
        gx = label_width + tick * scale
        parts.append(f'<line class="grid" x1="{gx:.1f}" y1="{top}" x2="{gx:.1f}" y2="{axis_y}"/>')
        parts.append(f'<text class="tick" x="{gx:.1f}" y="{axis_y + 16}" text-anchor="middle">{tick:g}%</text>')
    for r, row in enumerate(rows):
        y0 = top + r * row_height + _ROW_GAP / 2
        label_y = y0 + len(series) * _BAR / 2 + 4
        parts.append(
            f'<text class="row" x="{label_width - 8:.1f}" y="{label_y:.1f}" text-anchor="end">{escape(row)}</text>'
        )
        for i, s in enumerate(series):
            value = s.values[r]
            y = y0 + i * _BAR
            bar_width = value * scale
            tip = f"{s.label} · {row}: {_format(value)}"
            parts.append(
                f'<rect class="bar" x="{label_width:.1f}" y="{y:.1f}" width="{bar_width:.2f}" height="{_BAR - 2}" '
                f'fill="{color(s.color_index)}"><title>{escape(tip)}</title></rect>'
            )
            value_x = label_width + bar_width + 4
            value_y = y + _BAR - 4
            parts.append(f'<text class="value" x="{value_x:.1f}" y="{value_y:.1f}">{escape(_format(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)
