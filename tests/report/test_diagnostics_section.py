"""The report's diagnostics section: Spearman correlations with known values, the n warning, absence, escaping."""
from __future__ import annotations

import math

import pytest
from scipy.stats import spearmanr

from mec_eval.report import build_report
from mec_eval.report.collect import aggregate, select_cells
from mec_eval.report.diagnostics import correlation_table, spearman_frame
from mec_eval.report.document import build_document
from mec_eval.report.export import render_markdown
from mec_eval.report.html import render_html

ERANK = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
KNN = [10.0, 20.0, 30.0, 40.0, 60.0, 50.0]      # one swap: rho = 1 - 6 * 2 / (6 * 35) = 0.942857...
LINEAR = [60.0, 50.0, 40.0, 30.0, 20.0, 10.0]   # reversed: rho = -1


def _long(long_of, count: int = 6, constant: bool = False):
    rows = []
    for i in range(count):
        name = f"ckpt-{i}"
        rows += [{"checkpoint": name, "task": "diagnostics", "dataset": "digits", "metric": "effective_rank",
                  "value": ERANK[i]},
                 {"checkpoint": name, "task": "diagnostics", "dataset": "digits", "metric": "coding_length",
                  "value": 5.0 if constant else float(i), "primary": True},
                 {"checkpoint": name, "task": "knn", "dataset": "digits", "value": KNN[i]},
                 {"checkpoint": name, "task": "knn", "dataset": "digits", "metric": "top5", "value": 99.0 - i,
                  "primary": False},
                 {"checkpoint": name, "task": "linear", "dataset": "digits", "value": LINEAR[i]}]
    rows.append({"checkpoint": "MEC", "task": "knn", "dataset": "imagenet", "value": 70.0, "published": True,
                 "table": "mec-table1"})
    return long_of(rows)


def _cells(long):
    return select_cells(aggregate(long))[0]


def test_known_spearman_values_on_a_hand_made_table(long_of):
    frame = spearman_frame(_cells(_long(long_of)))
    erank = frame[frame["diag_metric"] == "effective_rank"].set_index("task")
    assert erank.loc["knn", "rho"] == pytest.approx(1 - 6 * 2 / (6 * 35))
    assert erank.loc["knn", "rho"] == pytest.approx(spearmanr(ERANK, KNN).statistic)
    assert erank.loc["linear", "rho"] == pytest.approx(-1.0)
    assert set(erank["n"]) == {6}
    # only primary metrics of the downstream tasks; the published row (no diagnostics) is never paired
    assert set(frame["metric"]) == {"top1"} and "imagenet" not in set(frame["dataset"])
    table = correlation_table(_cells(_long(long_of)))
    texts = {row.label: [c.text for c in row.cells] for row in table.rows}
    assert texts["effective rank [digits]"] == ["+0.94 (n=6)", "-1.00 (n=6)"]
    assert not any("Warning" in note for note in table.footnotes)


def test_a_warning_below_five_checkpoints_and_no_value_below_three(long_of):
    table = correlation_table(_cells(_long(long_of, count=4)))
    assert any("Warning" in note and "n=4" in note for note in table.footnotes)
    assert all("(n=4)" in c.text for row in table.rows for c in row.cells)
    tiny = correlation_table(_cells(_long(long_of, count=2)))
    assert all(c.text == "– (n=2)" for row in tiny.rows for c in row.cells)


def test_a_constant_diagnostic_has_no_correlation(long_of):
    frame = spearman_frame(_cells(_long(long_of, constant=True)))
    assert frame[frame["diag_metric"] == "coding_length"]["rho"].map(math.isnan).all()


def test_the_section_is_absent_without_diagnostics_rows(long_of):
    long = _long(long_of)
    long = long[long["task"] != "diagnostics"]
    report = build_document(long, "t")
    assert report.diagnostics is None and report.diagnostics_correlation is None
    assert "Spearman" not in render_html(report) and "Representation diagnostics" not in render_html(report)
    with_diag = build_document(_long(long_of), "t")
    assert "Spearman rank correlation" in render_html(with_diag)
    assert "Spearman" not in render_markdown(report)
    md = render_markdown(with_diag)  # the Markdown export carries the same section and correlation table
    section = md[md.index("## Representation diagnostics"):md.index("## Checkpoints")]
    assert "Spearman rank correlation" in section and "+0.94 (n=6)" in section and "-1.00 (n=6)" in section


def test_hostile_checkpoint_names_are_escaped(tmp_path, write_run):
    hostile = "<img src=x onerror=alert(1)>&\"'"
    names = [hostile, "plain-a", "plain-b"]
    for i, name in enumerate(names):
        write_run(tmp_path / "runs", name, "diagnostics", "digits", {"coding_length": 1.0 + i, "effective_rank": 3.0 - i})
        write_run(tmp_path / "runs", name, "knn", "digits", {"top1": 10.0 * i, "top5": 50.0})
    out = build_report([tmp_path / "runs"], tmp_path / "r.html", pdf=True)
    text = out.html.read_text()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "Spearman rank correlation" in text and "(n=3)" in text and "Warning" in text
    assert out.pdf.read_bytes().startswith(b"%PDF")
