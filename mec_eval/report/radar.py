"""Ranking radar charts in the spirit of MEC Figure 1, drawn with matplotlib (SVG for HTML, vector PDF).

Rank 1 of n sits at radius n (the rim) and rank n at radius 1, so a larger polygon means a better
representation across tasks; a missing value sits at the centre. Figures are built with
``matplotlib.figure.Figure`` (no pyplot state) and saved with fixed metadata so output is stable.
"""
from __future__ import annotations

import io
import math
import re
import warnings
from contextlib import contextmanager

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure

from mec_eval.report.rank import RadarChart

# Measured checkpoints get the strong tab10 colours, published rows the muted tab20b ones (and dashes).
_MEASURED = colormaps["tab10"].colors
_PUBLISHED = colormaps["tab20b"].colors
_SVG_META = {"Date": None, "Creator": None, "Format": None, "Type": None}


def plain(text: str) -> str:
    """``text`` drawn literally by matplotlib, never as mathtext: every ``$`` escaped (names may hold any text)."""
    return str(text).replace("$", r"\$")


@contextmanager
def missing_glyphs_ignored():
    """Names in scripts DejaVu Sans lacks are drawn as boxes (the HTML tables show them): no warning per glyph."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        yield


def assign_colors(entries: list[str], published: set[str]) -> dict[str, tuple]:
    """A fixed colour per entry, by position in the sorted entry list (the same in every chart)."""
    colors, counts = {}, {True: 0, False: 0}
    for entry in entries:
        pub = entry in published
        palette = _PUBLISHED if pub else _MEASURED
        colors[entry] = palette[counts[pub] % len(palette)]
        counts[pub] += 1
    return colors


def _angles(k: int) -> np.ndarray:
    return np.linspace(0.0, 2 * np.pi, k, endpoint=False)


def _setup_axes(ax, chart: RadarChart, fontsize: float, ring_labels: bool) -> None:
    """Axis names around the rim, rank rings inside; the first axis points up, clockwise as in the paper."""
    n, labels = len(chart.entries), [plain(axis.label) for axis in chart.axes]
    ax.set_theta_offset(np.pi / 2)
    ax.set_theta_direction(-1)
    ax.set_xticks(_angles(len(labels)), labels, fontsize=fontsize)
    ax.set_ylim(0, n + 0.25)
    step = max(1, math.ceil(n / 6))
    rings = list(range(n, 0, -step))
    ax.set_yticks(rings, [f"#{n + 1 - r}" for r in rings] if ring_labels else [], fontsize=fontsize - 2,
                  color="#777")
    ax.tick_params(axis="x", pad=2)
    ax.grid(color="#ccc", linewidth=0.6)
    ax.spines["polar"].set_color("#999")


def _polygon(ax, chart: RadarChart, entry: str, color, published: bool, label: str | None = None) -> None:
    radii = chart.radii.loc[entry].to_numpy(dtype=float)
    theta = _angles(len(radii))
    closed_t, closed_r = np.append(theta, theta[0]), np.append(radii, radii[0])
    ax.plot(closed_t, closed_r, color=color, linewidth=1.4 if published else 2.0,
            linestyle="--" if published else "-", marker="o", markersize=3, label=label)
    if not published:
        ax.fill(closed_t, closed_r, color=color, alpha=0.12)


def radar_figure(chart: RadarChart, colors: dict[str, tuple], published: set[str]) -> Figure:
    """All entries in one chart; the legend gives each polygon's area and its share of the maximum."""
    n = len(chart.entries)
    fig = Figure(figsize=(9.0, max(5.0, 2.2 + 0.24 * n)))
    ax = fig.add_axes((0.05, 0.08, 0.5, 0.8), projection="polar")
    _setup_axes(ax, chart, 9, ring_labels=True)
    for entry in chart.entries:
        label = f"{plain(entry)}: area {chart.area[entry]:.1f} ({100 * chart.area_share[entry]:.0f}%)"
        _polygon(ax, chart, entry, colors[entry], entry in published, label)
    fig.legend(loc="center left", bbox_to_anchor=(0.6, 0.5), fontsize=8, frameon=False,
               title="polygon area (% of max)", title_fontsize=8)
    fig.suptitle(f"{plain(chart.title)}: rank per task (outer = better)", fontsize=11)
    return fig


def small_multiples(chart: RadarChart, colors: dict[str, tuple], published: set[str]) -> Figure:
    """One small chart per entry, largest area first, so that crowded charts stay readable."""
    entries = sorted(chart.entries, key=lambda e: (-chart.area[e], chart.entries.index(e)))
    cols = min(len(entries), 5)
    rows = math.ceil(len(entries) / cols)
    height = 2.7 * rows + 0.5
    fig = Figure(figsize=(2.4 * cols, height))
    # Fixed margins in inches (room for the title and each panel's two-line title); a layout engine
    # would be tidier but costs seconds per figure.
    fig.subplots_adjust(left=0.07, right=0.93, bottom=0.35 / height, top=1 - 0.95 / height, wspace=0.7,
                        hspace=0.8)
    for i, entry in enumerate(entries):
        ax = fig.add_subplot(rows, cols, i + 1, projection="polar")
        _setup_axes(ax, chart, 6.5, ring_labels=False)
        _polygon(ax, chart, entry, colors[entry], entry in published)
        ax.set_title(f"{plain(entry)}\n{100 * chart.area_share[entry]:.0f}% of max area", fontsize=7.5, pad=14)
    fig.suptitle(f"{plain(chart.title)}: one panel per checkpoint", fontsize=10)
    return fig


def figure_svg(fig: Figure, salt: str) -> str:
    """Inline SVG markup: text as paths (no fonts needed), no dates, ids salted per figure so they never clash."""
    buffer = io.StringIO()
    with rc_context({"svg.hashsalt": salt, "svg.fonttype": "path"}), missing_glyphs_ignored():
        fig.savefig(buffer, format="svg", metadata=_SVG_META)
    # The XML prolog and DOCTYPE are not allowed inside an HTML document.
    return re.sub(r"^.*?(?=<svg)", "", buffer.getvalue(), flags=re.S)
