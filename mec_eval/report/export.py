"""CSV and Markdown versions of the report's numbers and tables (for papers, spreadsheets and READMEs)."""
from __future__ import annotations

import re

from mec_eval.report.document import Report
from mec_eval.report.tables import Cell, ReportTable

RESULT_COLUMNS = ["checkpoint", "task", "dataset", "metric", "value", "protocol", "seed", "source",
                  "setting", "std", "n"]
CSV_NAMES = ("results.csv", "ranks.csv")
RANK_COLUMNS = ["checkpoint", "axis", "value", "rank", "task", "dataset", "metric", "chart", "published"]


def results_csv(report: Report) -> str:
    """Long format, one row per reported number (mean over seeds/trials; ';'-joined seeds and sources)."""
    frame = report.results.sort_values(["published", "checkpoint", "task", "dataset", "metric", "setting",
                                        "protocol"], kind="stable")
    return frame[RESULT_COLUMNS].to_csv(index=False, lineterminator="\n")


def ranks_csv(report: Report) -> str:
    """One row per (chart, axis, checkpoint): the axis value and its rank (1 = best, ties share the better)."""
    return report.ranks[RANK_COLUMNS].to_csv(index=False, lineterminator="\n")


def csv_files(report: Report) -> dict[str, str]:
    """File name (``CSV_NAMES``) -> CSV text."""
    return dict(zip(CSV_NAMES, (results_csv(report), ranks_csv(report))))


# Characters with a meaning in (GitHub) Markdown are backslash-escaped; &, < and > become entities so that no
# name can inject HTML; line breaks would end a table row, so they become spaces.
_MD_PUNCTUATION = re.compile(r"([\\`*_\[\]|~#])")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _md_escape(text: str) -> str:
    """``text`` shown literally in a Markdown paragraph, heading or table cell."""
    text = " ".join(str(text).splitlines())
    text = re.sub(r"[&<>]", lambda m: _MD_ENTITIES[m.group()], text)
    return _MD_PUNCTUATION.sub(r"\\\1", text)


def _md_cell(cell: Cell | None) -> str:
    if cell is None:
        return "–"
    text = _md_escape(cell.text) + (f" ({cell.n})" if cell.n > 1 else "")
    if cell.mark == "best":
        text = f"**{text}**"
    elif cell.mark == "second":
        text = f"<u>{text}</u>"
    return text + (f"<sup>{_md_escape(cell.tag)}</sup>" if cell.tag else "")


def table_markdown(table: ReportTable) -> str:
    """A GitHub pipe table; multi-level headers are joined with ' / '; published rows in italics."""
    header = [table.label_header, *table.flat_header()]
    lines = [f"### {_md_escape(table.title)}", "",
             "| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join([":---"] + ["---:"] * table.n_columns) + "|"]
    for row in table.rows:
        label = f"*{_md_escape(row.label)}*" if row.published else _md_escape(row.label)
        lines.append("| " + " | ".join([label, *(_md_cell(c) for c in row.cells)]) + " |")
    lines.append("")
    lines += [f"{_md_escape(note)}  " for note in table.footnotes]
    return "\n".join(lines) + "\n"


def render_markdown(report: Report) -> str:
    """The report's tables and chart notes as Markdown (the charts themselves are in the HTML/PDF)."""
    esc = _md_escape
    parts = [f"# {esc(report.title)}", "", *map(esc, report.intro), "", "## Ranking radar charts (MEC Figure 1)", ""]
    for comparison in report.comparisons:
        if comparison.title:
            parts += [f"### {esc(comparison.title)}", "", esc(comparison.note), ""]
        for view in comparison.charts:
            parts += [f"**{esc(view.chart.title)}.** " + " ".join(map(esc, view.notes)), ""]
            if view.table is not None:
                parts.append(table_markdown(view.table))
    parts += ["## Results", ""] + [table_markdown(t) for t in report.tables]
    if report.diagnostics is not None:
        parts += ["## Representation diagnostics", "", table_markdown(report.diagnostics)]
        if report.diagnostics_correlation is not None:
            parts.append(table_markdown(report.diagnostics_correlation))
    parts += ["## Checkpoints", "", table_markdown(report.provenance)]
    return "\n".join(parts)
