"""Reports built from result.json files only (never imports a task): HTML, PDF, CSV and Markdown.

``build_report`` is the one entry point (CLI ``mec-eval report`` and the demo call it). Everything is
computed in memory first and written as one set at the end, so an error never leaves half a report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mec_eval.report.collect import COLUMNS, EXTENDED_COLUMNS, aggregate, collect_results
from mec_eval.report.document import build_document
from mec_eval.report.export import CSV_NAMES, csv_files, render_markdown
from mec_eval.report.html import render_html
from mec_eval.report.output import check_targets, write_set
from mec_eval.report.pdf import render_pdf
from mec_eval.report.rank import build_radar, polygon_area, rank_values

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


def _targets(out: Path, pdf: bool, csv_dir: Path | None, markdown: Path | str | None) -> ReportOutputs:
    """Where every requested file goes (nothing is checked or written here)."""
    outputs = ReportOutputs(out)
    if pdf:
        outputs.pdf = out.with_suffix(".pdf")
    if csv_dir is not None:
        outputs.csv = [csv_dir / name for name in CSV_NAMES]
    if markdown is not None:
        outputs.markdown = Path(markdown)
    return outputs


def build_report(runs: list[Path | str], out: Path | str, *, pdf: bool = False, with_published: bool = False,
                 csv_dir: Path | str | None = None, markdown: Path | str | None = None,
                 title: str = "mec-eval report", skip_bad: bool = False) -> ReportOutputs:
    """Collect every result.json under ``runs`` and write the HTML report (plus PDF, CSV, Markdown if asked).

    Every output path is checked before anything is read or written, everything is rendered in memory,
    and the files are then written as one set (all new or, on an error, all as they were).

    Args:
        runs: folders searched recursively for result.json (UserError when none is found).
        out: the HTML file; the PDF goes next to it with the suffix ``.pdf``.
        with_published: add the MEC paper's reference rows (Tables 1-4, 8), marked † and never merged
            with measured rows.
        csv_dir: folder for ``results.csv`` and ``ranks.csv``.
        markdown: path of a Markdown copy of the tables.
        skip_bad: leave out result.json files the report cannot use, naming each on stderr, instead of
            stopping with a UserError at the first.
    """
    csv_dir = Path(csv_dir) if csv_dir is not None else None
    outputs = _targets(Path(out), pdf, csv_dir, markdown)
    targets = [(outputs.html, "--out"), (outputs.pdf, "the PDF (--out with .pdf)"),
               (outputs.markdown, "--markdown"), *((path, "--csv") for path in outputs.csv)]
    check_targets([(path, flag) for path, flag in targets if path is not None], csv_dir)
    long = collect_results(runs, skip_bad=skip_bad)
    if with_published:
        long = _with_published(long)
    report = build_document(long, title)
    files: dict[Path, bytes] = {outputs.html: render_html(report).encode("utf-8")}
    if outputs.pdf is not None:
        files[outputs.pdf] = render_pdf(report)
    if csv_dir is not None:
        files.update({csv_dir / name: text.encode("utf-8") for name, text in csv_files(report).items()})
    if outputs.markdown is not None:
        files[outputs.markdown] = render_markdown(report).encode("utf-8")
    write_set(files)
    return outputs
