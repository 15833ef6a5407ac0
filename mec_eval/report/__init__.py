"""Reports built from result.json files only (never imports a task): HTML, PDF, CSV and Markdown.

``build_report`` is the one entry point (CLI ``mec-eval report`` and the demo call it). Everything is
computed in memory first and written atomically at the end, so an error never leaves half a report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mec_eval.report.collect import COLUMNS, EXTENDED_COLUMNS, aggregate, collect_results
from mec_eval.report.document import build_document
from mec_eval.report.export import csv_files, render_markdown
from mec_eval.report.html import render_html
from mec_eval.report.pdf import render_pdf
from mec_eval.report.rank import build_radar, polygon_area, rank_values
from mec_eval.utils import atomic_write_bytes

__all__ = ["COLUMNS", "EXTENDED_COLUMNS", "ReportOutputs", "aggregate", "build_radar", "build_report",
           "collect_results", "polygon_area", "rank_values"]


@dataclass
class ReportOutputs:
    """Paths written by :func:`build_report`."""

    html: Path
    pdf: Path | None = None
    csv: list[Path] = field(default_factory=list)
    markdown: Path | None = None


def _with_published(long: pd.DataFrame) -> pd.DataFrame:
    from mec_eval.report.published import load_published

    published = load_published()
    return pd.concat([published[EXTENDED_COLUMNS], long[EXTENDED_COLUMNS]], ignore_index=True)


def build_report(runs: list[Path | str], out: Path | str, *, pdf: bool = False, with_published: bool = False,
                 csv_dir: Path | str | None = None, markdown: Path | str | None = None,
                 title: str = "mec-eval report") -> ReportOutputs:
    """Collect every result.json under ``runs`` and write the HTML report (plus PDF, CSV, Markdown if asked).

    Args:
        runs: folders searched recursively for result.json (UserError when none is found).
        out: the HTML file; the PDF goes next to it with the suffix ``.pdf``.
        with_published: add the MEC paper's reference rows (Tables 1-4, 8), marked † and never merged
            with measured rows.
        csv_dir: folder for ``results.csv`` and ``ranks.csv``.
        markdown: path of a Markdown copy of the tables.
    """
    long = collect_results(runs)
    if with_published:
        long = _with_published(long)
    report = build_document(long, title)
    out = Path(out)
    files: dict[Path, bytes] = {out: render_html(report).encode("utf-8")}
    outputs = ReportOutputs(out)
    if pdf:
        outputs.pdf = out.with_suffix(".pdf")
        files[outputs.pdf] = render_pdf(report)
    if csv_dir is not None:
        for name, text in csv_files(report).items():
            outputs.csv.append(Path(csv_dir) / name)
            files[outputs.csv[-1]] = text.encode("utf-8")
    if markdown is not None:
        outputs.markdown = Path(markdown)
        files[outputs.markdown] = render_markdown(report).encode("utf-8")
    for path, data in files.items():
        atomic_write_bytes(path, data)
    return outputs
