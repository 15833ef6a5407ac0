"""Everything a report shows, computed once and rendered by the HTML, PDF and Markdown writers."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from mec_eval.report.catalog import RANKED_PUBLISHED_TABLES
from mec_eval.report.collect import aggregate, select_cells
from mec_eval.report.diagnostics import correlation_table
from mec_eval.report.radar import assign_colors, radar_figure, small_multiples
from mec_eval.report.rank import Comparison, RadarChart, build_comparisons, entry_order, ranks_frame
from mec_eval.report.tables import (ReportTable, area_table, build_tables, diagnostics_table,
                                    provenance_table)

# Above this many polygons one chart gets crowded, so one panel per checkpoint follows it.
SMALL_MULTIPLES_FROM = 4
AREA_NOTE = ("Each axis is the rank on one task (rank 1 of n at radius n, the rim; rank n at radius 1; "
             "ties share the better rank; a missing value sits at the centre). Polygon area = "
             "0.5·sin(2π/k)·Σ r_i·r_(i+1) over the k rank radii; the percentage divides it by the largest "
             "possible area n²·k·0.5·sin(2π/k) (rank 1 everywhere).")


@dataclass
class ChartView:
    """One radar chart with its figures (none when it cannot be drawn), its notes and its rank table."""

    key: str
    chart: RadarChart
    figures: list[Figure]
    notes: list[str]
    table: ReportTable | None


@dataclass
class ComparisonView:
    """The charts of one comparison (see ``rank.build_comparisons``)."""

    title: str
    note: str
    charts: list[ChartView]


@dataclass
class Report:
    """The whole report in memory: what the HTML, PDF, Markdown and CSV writers render."""

    title: str
    intro: list[str]
    comparisons: list[ComparisonView]
    tables: list[ReportTable]
    diagnostics: ReportTable | None
    provenance: ReportTable
    results: pd.DataFrame          # aggregated numbers (results.csv)
    ranks: pd.DataFrame            # radar ranks (ranks.csv)
    diagnostics_correlation: ReportTable | None = None  # Spearman of diagnostics vs tasks (report.diagnostics)


def _chart_notes(chart: RadarChart) -> list[str]:
    """How to read the chart (or why there is none), missing axes and values, supplementary axes."""
    notes = [chart.reason] if chart.reason else [AREA_NOTE]
    if chart.missing_axes and chart.axes:
        notes.append(f"Paper axes without results: {', '.join(chart.missing_axes)}.")
    notes += chart.notes
    if not chart.reason and chart.missing_values:
        listed = "; ".join(f"{e}: {', '.join(axes)}" for e, axes in chart.missing_values.items())
        notes.append(f"Missing values (plotted at the centre): {listed}.")
    return notes


def _comparison_views(comparisons: list[Comparison], colors: dict, published: set[str]) -> list[ComparisonView]:
    views = []
    for c_index, comparison in enumerate(comparisons):
        charts = []
        for chart in comparison.charts:
            key = f"radar-{c_index}-{chart.kind}"
            figures = [radar_figure(chart, colors, published)] if not chart.reason else []
            if figures and len(chart.entries) > SMALL_MULTIPLES_FROM:
                figures.append(small_multiples(chart, colors, published))
            table = area_table(chart) if chart.axes and chart.entries else None
            charts.append(ChartView(key, chart, figures, _chart_notes(chart), table))
        views.append(ComparisonView(comparison.title, comparison.note, charts))
    return views


def _intro(long: pd.DataFrame, dropped: int) -> list[str]:
    measured = long[~long["published"].astype(bool)]
    lines = [f"{measured['result_file'].nunique()} result files, {measured['checkpoint'].nunique()} checkpoints; "
             f"latest run finished {measured['finished'].max() or 'unknown'}."]
    published = long[long["published"].astype(bool)]
    if not published.empty:
        shown = sorted(set(published["table"]) & set(RANKED_PUBLISHED_TABLES))
        rest = sorted(set(published["table"]) - set(RANKED_PUBLISHED_TABLES))
        lines.append(f"Published rows (marked †, grey italic) are reference numbers, not measured here; tables and "
                     f"charts use {', '.join(shown) or 'none of them'}"
                     + (f"; {', '.join(rest)} are in results.csv only." if rest else "."))
    lines.append("Values are percentages (ID switches are counts); protocol 'paper' is the faithful protocol, "
                 "'fast' its cached-feature variant (shown as a superscript).")
    if dropped:
        lines.append(f"{dropped} numbers appear in results.csv only (another protocol of the same task, a "
                     "published method at a shorter schedule, or a published table not ranked here); tables and "
                     "charts show the paper protocol and the longest schedule.")
    return lines


def build_document(long: pd.DataFrame, title: str) -> Report:
    """Aggregate, rank, tabulate and draw: the whole report in memory, nothing written yet."""
    agg = aggregate(long)
    cells, dropped = select_cells(agg)
    published = set(cells.loc[cells["published"], "entry"])
    colors = assign_colors(entry_order(cells["entry"].unique(), published), published)
    comparisons = build_comparisons(cells)
    views = _comparison_views(comparisons, colors, published)
    return Report(title, _intro(long, dropped), views, build_tables(cells), diagnostics_table(cells),
                  provenance_table(long), agg, ranks_frame(comparisons, cells), correlation_table(cells))
