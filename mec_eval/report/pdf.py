"""The report as a PDF with matplotlib's PdfPages: the same radar figures, tables drawn as text grids.

Text and tables flow top-down over landscape A4 pages (a table split across pages repeats its header);
radar figures get pages of their own. Tables keep the paper's conventions: bold best, underlined second
(mathtext), published rows grey italic, protocol superscripts.
"""
from __future__ import annotations

import io
import math
import re
import textwrap

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from mec_eval import __version__
from mec_eval.report.document import Report
from mec_eval.report.radar import missing_glyphs_ignored
from mec_eval.report.radar import plain as _plain
from mec_eval.report.tables import Cell, ReportTable

PAGE = (11.69, 8.27)          # landscape A4, inches
MARGIN = 0.5
CHAR_WIDTH = 0.6              # average glyph width in font-size units (DejaVu Sans)
MAX_FONT = 8.5
FOOT_FONT = 6.5


def _math(text: str) -> str:
    """A cell value inside mathtext (spaces, ±, % and dashes escaped)."""
    return text.replace("%", r"\%").replace("±", r"\pm").replace("–", "-").replace(" ", r"\ ")


def _cell_text(cell: Cell, italic: bool = False) -> str:
    """Cell text for matplotlib: underlined through mathtext (plain text has no underline)."""
    text = cell.text + (f" ({cell.n})" if cell.n > 1 else "")
    font = r"\mathit" if italic else r"\mathrm"
    text = rf"$\underline{{{font}{{{_math(text)}}}}}$" if cell.mark == "second" else _plain(text)
    if cell.tag:
        text += rf"$^{{\mathrm{{{re.sub(r'[^A-Za-z0-9]', '', cell.tag)}}}}}$"
    return text


def _cell_len(cell: Cell | None) -> int:
    if cell is None:
        return 1
    return len(cell.text) + (len(f" ({cell.n})") if cell.n > 1 else 0) + len(cell.tag)


def _column_widths(table: ReportTable) -> list[int]:
    """Characters per column: the label column, then each data column (cells and single-column headers)."""
    widths = [max([len(table.label_header)] + [len(r.label) for r in table.rows])]
    for i in range(table.n_columns):
        widths.append(max([_cell_len(r.cells[i]) for r in table.rows] + [1]))
    widths = [w + 2 for w in widths]
    for level in table.header:
        col = 1
        for text, span in level:
            # A spanning header wider than its columns widens each of them by an equal share.
            short = len(text) + 2 - sum(widths[col:col + span])
            if short > 0:
                for i in range(col, col + span):
                    widths[i] += math.ceil(short / span)
            col += span
    return widths


class _Flow:
    """Places blocks top-down on landscape pages; y is in inches from the top edge."""

    def __init__(self) -> None:
        self.pages: list[Figure] = []
        self.ax = None
        self.y = 0.0

    def new_page(self) -> None:
        fig = Figure(figsize=PAGE)
        self.ax = fig.add_axes((0, 0, 1, 1))
        self.ax.set_xlim(0, PAGE[0])
        self.ax.set_ylim(PAGE[1], 0)
        self.ax.axis("off")
        self.pages.append(fig)
        self.y = MARGIN

    def room(self, height: float) -> None:
        """Start a new page unless ``height`` inches still fit on this one."""
        if self.ax is None or self.y + height > PAGE[1] - MARGIN:
            self.new_page()

    def figure(self, fig: Figure) -> None:
        """A whole figure is a page of its own; the flow continues on a fresh page after it."""
        self.pages.append(fig)
        self.ax = None

    @staticmethod
    def _wrap(lines: list[str], size: float) -> tuple[list[str], float]:
        """Lines wrapped to the page width and their height in inches."""
        width = int((PAGE[0] - 2 * MARGIN) * 72 / (CHAR_WIDTH * size))
        wrapped = [w for line in lines for w in textwrap.wrap(line, width)]
        return wrapped, len(wrapped) * size * 1.45 / 72

    def text(self, lines: list[str], size: float = 8.5, weight: str = "normal", color: str = "#222") -> None:
        wrapped, height = self._wrap(lines, size)
        self.room(height)
        self.ax.text(MARGIN, self.y, _plain("\n".join(wrapped)), fontsize=size, weight=weight, color=color,
                     va="top", linespacing=1.45)
        self.y += height + 0.12

    def _header(self, table: ReportTable, xs: list[float], line: float, size: float) -> None:
        depth, top = len(table.header), self.y
        self.ax.text(xs[0] + 0.05, top + line * depth / 2, _plain(table.label_header), ha="left", va="center",
                     fontsize=size, weight="bold")
        for level in table.header:
            col = 1
            for text, span in level:
                left, right = xs[col], xs[col + span]
                self.ax.text((left + right) / 2, self.y + line / 2, _plain(text), ha="center", va="center",
                             fontsize=size, weight="bold")
                if span > 1:
                    self.ax.plot([left + 0.05, right - 0.05], [self.y + line * 0.95] * 2, color="#999", lw=0.6)
                col += span
            self.y += line
        self.ax.plot([xs[0], xs[-1]], [top, top], color="#333", lw=1.2)
        self.ax.plot([xs[0], xs[-1]], [self.y, self.y], color="#333", lw=0.6)

    def _row(self, row, xs: list[float], line: float, size: float) -> None:
        style = {"color": "#777", "style": "italic"} if row.published else {"color": "#222"}
        mid = self.y + line / 2
        self.ax.text(xs[0] + 0.05, mid, _plain(row.label), ha="left", va="center", fontsize=size, **style)
        for i, cell in enumerate(row.cells):
            weight = "bold" if cell is not None and cell.mark == "best" else "normal"
            self.ax.text(xs[i + 2] - 0.08, mid, "–" if cell is None else _cell_text(cell, row.published), ha="right",
                         va="center", fontsize=size, weight=weight, **style)
        self.y += line

    def table(self, table: ReportTable) -> None:
        """Title, header and rows (continued with the header repeated on the next page), then footnotes."""
        chars = _column_widths(table)
        size = min(MAX_FONT, (PAGE[0] - 2 * MARGIN) * 72 / (CHAR_WIDTH * sum(chars)))
        xs = [MARGIN]
        for width in chars:
            xs.append(xs[-1] + width * CHAR_WIDTH * size / 72)
        line = size * 1.75 / 72
        rows, first = list(table.rows), True
        whole = 0.55 + line * (len(table.header) + len(rows)) + self._wrap(table.footnotes, FOOT_FONT)[1]
        if whole <= PAGE[1] - 2 * MARGIN:
            self.room(whole)        # a table that fits on one page is never split
        while first or rows:
            self.room(0.35 + line * (len(table.header) + min(len(rows), 3)))
            self.text([table.title + ("" if first else " (continued)")], size=10.5, weight="bold")
            self._header(table, xs, line, size)
            while rows and self.y + line <= PAGE[1] - MARGIN:
                self._row(rows.pop(0), xs, line, size)
            self.ax.plot([xs[0], xs[-1]], [self.y, self.y], color="#333", lw=1.2)
            self.y += 0.1
            first = False
        if table.footnotes:
            self.text(table.footnotes, size=FOOT_FONT, color="#555")
        self.y += 0.2


def _pages(report: Report) -> list[Figure]:
    """Title and notes, each radar chart with its notes and rank table, the results, diagnostics, provenance."""
    flow = _Flow()
    flow.text([report.title], size=15, weight="bold")
    flow.text(report.intro + [f"Generated by mec-eval {__version__} from result.json files."], size=9)
    for comparison in report.comparisons:
        for view in comparison.charts:
            for fig in view.figures:
                flow.figure(fig)
            title = f"{comparison.title}: {view.chart.title}" if comparison.title else view.chart.title
            flow.text([f"Radar chart, {title}"], size=10.5, weight="bold")
            flow.text(([comparison.note] if comparison.note else []) + view.notes)
            if view.table is not None:
                flow.table(view.table)
    for table in report.tables + [t for t in (report.diagnostics, report.diagnostics_correlation)
                                  if t is not None] + [report.provenance]:
        flow.table(table)
    return flow.pages


def render_pdf(report: Report) -> bytes:
    """The PDF as bytes (written atomically by the caller); no creation date, so output is reproducible."""
    buffer = io.BytesIO()
    with missing_glyphs_ignored(), PdfPages(buffer, metadata={"Title": report.title, "CreationDate": None,
                                                              "Creator": f"mec-eval {__version__}"}) as pdf:
        for fig in _pages(report):
            pdf.savefig(fig)
    return buffer.getvalue()
