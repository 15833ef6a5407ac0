"""Tables in the MEC paper's layout: best in bold, second underlined per column, published rows marked.

A :class:`ReportTable` is renderer-neutral (HTML, Markdown and PDF draw the same object): multi-level
column headers, one row per checkpoint, and cells that carry their text, mark and protocol tag.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import pandas as pd

from mec_eval.report.catalog import (COUNT_METRICS, DATASET_LABELS, GROUPS, TaskGroup, dataset_sort_key,
                                     group_of, is_diagnostic, metric_label, metric_sort_key, task_label)
from mec_eval.report.collect import PUBLISHED_MARK
from mec_eval.report.rank import RadarChart, rank_values

DECIMALS = 1        # the paper prints one decimal
FAITHFUL = ("paper", "published")


@dataclass
class Cell:
    """One table cell as every renderer needs it."""

    text: str
    mark: str = ""          # "best", "second" or ""
    n: int = 1              # runs averaged; shown when > 1
    tag: str = ""           # protocol other than the paper's, shown as a superscript
    title: str = ""         # hover text in HTML (e.g. the full sha256)


@dataclass
class Row:
    """A checkpoint's row; published rows are styled apart and never merged with measured ones."""

    label: str
    cells: list[Cell | None]
    published: bool = False


@dataclass
class ReportTable:
    """A titled table with spanning headers, rows and footnotes, independent of the output format."""

    title: str
    header: list[list[tuple[str, int]]]     # levels of (text, column span) over the data columns
    rows: list[Row]
    footnotes: list[str] = field(default_factory=list)
    label_header: str = "checkpoint"

    @property
    def n_columns(self) -> int:
        return sum(span for _, span in self.header[0]) if self.header else 0

    def flat_header(self) -> list[str]:
        """One header string per data column (levels joined), for formats without spans."""
        names = [[] for _ in range(self.n_columns)]
        for level in self.header:
            col = 0
            for text, span in level:
                for i in range(col, col + span):
                    names[i] += [text] if text else []
                col += span
        return [" / ".join(parts) for parts in names]


def format_number(value: float, count: bool = False) -> str:
    """Percentages with the paper's one decimal; counts (ID switches) as integers."""
    return f"{value:.0f}" if count else f"{value:.{DECIMALS}f}"


def value_text(value: float, std: float, n: int, count: bool = False) -> str:
    """``mean`` or ``mean ± std`` (sample std over seeds/trials)."""
    text = format_number(value, count)
    if n > 1 and not pd.isna(std):
        # A spread below the printed precision keeps two decimals so that it does not read as 0.0.
        spread = format_number(std, count) if count or std >= 0.1 else f"{std:.2f}"
        text += f" ± {spread}"
    return text


def spans(headers: list[tuple[str, ...]]) -> list[list[tuple[str, int]]]:
    """Header levels with column spans: equal consecutive prefixes merge; all-empty levels are dropped."""
    levels = []
    for depth in range(len(headers[0]) if headers else 0):
        if all(not h[depth] for h in headers):
            continue
        level: list[tuple[str, int]] = []
        for i, h in enumerate(headers):
            if level and i and headers[i - 1][:depth + 1] == h[:depth + 1]:
                level[-1] = (level[-1][0], level[-1][1] + 1)
            else:
                level.append((h[depth], 1))
        levels.append(level)
    return levels


def _marks(values: pd.Series, higher_is_better: bool) -> pd.Series:
    ranks = rank_values(values, higher_is_better)
    return ranks.map({1.0: "best", 2.0: "second"}).fillna("")


def _row_order(cells: pd.DataFrame) -> list[str]:
    """Published rows first in the paper's order, then your checkpoints by name (the paper puts MEC last)."""
    first = cells.drop_duplicates("entry")
    published = list(first.loc[first["published"], "entry"])
    return published + sorted(first.loc[~first["published"], "entry"], key=lambda e: (e.lower(), e))


def _footnotes(cells: pd.DataFrame, ranked: bool) -> list[str]:
    notes = []
    if ranked:
        notes.append("Bold: best, underlined: second in each column (↑ higher is better, ↓ lower is better); "
                     "ties share the better rank.")
    if (cells["n"] > 1).any():
        notes.append("mean ± sample std over seeds/trials; the number of runs in brackets.")
    tags = sorted(set(cells["protocol"]) - set(FAITHFUL))
    if tags:
        notes.append(f"Superscript: protocol other than the paper's ({', '.join(tags)}); "
                     "'fast' probes cached features, see the task's YAML.")
    if (cells["setting"] != "").any():
        notes.append("Settings layer3/layer4: UniTrack features from that ResNet stage; the radar chart uses the "
                     "better of the two, as the paper does.")
    published = cells[cells["published"]].drop_duplicates("table")
    if not published.empty:
        # The source cites table, row and column; the table part is enough here (cells show the rest on hover).
        refs = "; ".join(source.split(", row '")[0] for source in published["source"])
        notes.append(f"† published number, not measured here: {refs}. Methods listed at several schedules show "
                     "the longest.")
    return notes


def results_table(title: str, cells: pd.DataFrame, group: TaskGroup | None = None, ranked: bool = True) -> ReportTable:
    """Checkpoints x (task, metric, setting) columns; Table 8 style (datasets as columns) for transfer groups."""
    order = {t: i for i, t in enumerate(group.tasks)} if group else {}
    keys = cells[["task", "dataset", "metric", "setting"]].drop_duplicates()
    keys = sorted(keys.itertuples(index=False), key=lambda k: (order.get(k.task, len(order)), k.task,
                  dataset_sort_key(k.task, k.dataset), metric_sort_key(k.metric), k.setting))
    indexed = cells.set_index(["entry", "task", "dataset", "metric", "setting"])
    entries = _row_order(cells)
    headers, columns = [], []
    for key in keys:
        rows = indexed.xs(tuple(key), level=["task", "dataset", "metric", "setting"])
        higher = bool(rows["higher_is_better"].iloc[0])
        metric = metric_label(key.metric, higher if ranked else None)
        if group is not None and group.datasets_as_columns:
            headers.append((DATASET_LABELS.get(key.dataset, key.dataset), metric))
        else:
            headers.append((task_label(key.task, key.dataset, key.metric), metric, key.setting))
        marks = _marks(rows["value"], higher) if ranked else pd.Series("", index=rows.index)
        count = key.metric in COUNT_METRICS
        columns.append({r.Index: Cell(value_text(r.value, r.std, int(r.n), count), marks[r.Index], int(r.n),
                                      "" if r.protocol in FAITHFUL else r.protocol,
                                      r.source if r.published else "")
                        for r in rows.itertuples()})
    published = set(cells.loc[cells["published"], "entry"])
    table_rows = [Row(entry, [col.get(entry) for col in columns], entry in published) for entry in entries]
    return ReportTable(title, spans(headers), table_rows, _footnotes(cells, ranked))


def build_tables(cells: pd.DataFrame) -> list[ReportTable]:
    """One table per task group present (paper order), then one for tasks outside the paper's tables."""
    perf = cells[[not is_diagnostic(t, m) for t, m in zip(cells["task"], cells["metric"])]]
    groups = perf["task"].map(group_of)
    tables = []
    for group in GROUPS:
        rows = perf[groups == group.key]
        rows = rows[rows["primary"]] if group.primary_only else rows
        if not rows.empty:
            tables.append(results_table(group.title, rows, group))
    other = perf[groups == "other"]
    if not other.empty:
        tables.append(results_table("Other tasks", other))
    return tables


def diagnostics_table(cells: pd.DataFrame) -> ReportTable | None:
    """Coding length, effective rank, ...: descriptive numbers, so nothing is bold or underlined."""
    rows = cells[[is_diagnostic(t, m) for t, m in zip(cells["task"], cells["metric"])]]
    return results_table("Representation diagnostics", rows, ranked=False) if not rows.empty else None


def area_table(chart: RadarChart) -> ReportTable:
    """Each entry's rank per axis and its polygon area (absolute and as a share of the largest possible)."""
    labels = [axis.label for axis in chart.axes]
    marks = _marks(chart.area, True)
    rows = []
    for entry in chart.entries:
        ranks = [Cell("–" if pd.isna(chart.ranks.at[entry, c]) else str(int(chart.ranks.at[entry, c])))
                 for c in labels]
        area, share = chart.area[entry], chart.area_share[entry]
        areas = [Cell("–"), Cell("–")] if pd.isna(area) else [Cell(f"{area:.1f}", marks[entry]),
                                                              Cell(f"{100 * share:.0f}%", marks[entry])]
        rows.append(Row(entry, ranks + areas, entry.endswith(PUBLISHED_MARK)))
    header = [[("rank per axis (1 = best)", len(labels)), ("polygon area", 2)],
              [(c, 1) for c in labels] + [("area", 1), ("% of max", 1)]]
    return ReportTable(f"{chart.title}: ranks and areas", header, rows)


def _epoch_text(epoch) -> str:
    """Epochs as an integer; a value that is not a number (an old or hand-written file) is shown as given."""
    if epoch is None or (isinstance(epoch, float) and pd.isna(epoch)):
        return "–"
    if isinstance(epoch, numbers.Real) and float(epoch).is_integer():
        return str(int(epoch))
    return str(epoch) or "–"


def provenance_table(long: pd.DataFrame) -> ReportTable:
    """Where every measured checkpoint came from: file, sha256 (short, full on hover), method, epochs, layout."""
    measured = long[~long["published"].astype(bool)]
    cols = ["checkpoint", "path", "sha256", "method", "epoch", "layout"]
    prov = measured[cols].astype(object).drop_duplicates()
    prov = prov.sort_values(["checkpoint", "path"], key=lambda s: s.astype(str))
    rows = []
    for r in prov.itertuples(index=False):
        sha = r.sha256 if isinstance(r.sha256, str) else ""
        epoch = _epoch_text(r.epoch)
        cells = [Cell(str(r.path or "–")), Cell(sha[:12] or "–", title=sha), Cell(str(r.method or "–")),
                 Cell(epoch), Cell(str(r.layout or "–"))]
        rows.append(Row(r.checkpoint, cells))
    header = [[("file", 1), ("sha256", 1), ("method", 1), ("epochs", 1), ("layout", 1)]]
    return ReportTable("Checkpoints (provenance)", header, rows,
                       ["sha256 shortened to 12 hex digits; the HTML shows the full digest on hover."])
