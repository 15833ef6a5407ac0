"""Collecting result.json files, aggregating trials, and the paper-layout tables in HTML and Markdown."""
import io

import pandas as pd
import pytest

from mec_eval.report import collect_results
from mec_eval.report.collect import aggregate, select_cells
from mec_eval.report.document import build_document
from mec_eval.report.export import csv_files, render_markdown, table_markdown
from mec_eval.report.html import render_html, table_html
from mec_eval.report.tables import build_tables, diagnostics_table, provenance_table
from mec_eval.utils import UserError


def test_trials_aggregate_to_mean_sample_std_and_count(tmp_path, write_run):
    for seed, (a, b) in enumerate([(70.0, 60.0), (72.0, 62.0)]):
        write_run(tmp_path, "mec", "knn", "digits", {"top1": a, "top5": 99.0}, seed=seed)
        write_run(tmp_path, "random", "knn", "digits", {"top1": b, "top5": 98.0}, seed=seed)
    write_run(tmp_path, "mec", "sot", "otb2015", {"auc_xcorr": 50.0}, setting="layer3")
    long = collect_results([tmp_path])
    assert len(long) == 9 and set(long["setting"]) == {"", "layer3"} and not long["published"].any()
    agg = aggregate(long).set_index(["checkpoint", "task", "metric"])
    row = agg.loc[("mec", "knn", "top1")]
    assert row["value"] == pytest.approx(71.0) and row["std"] == pytest.approx(2 ** 0.5) and row["n"] == 2
    assert row["seed"] == "0;1" and row["source"].count("result.json") == 2
    assert pd.isna(agg.loc[("mec", "sot", "auc_xcorr"), "std"])


def test_no_results_is_a_user_error_naming_the_folder(tmp_path):
    with pytest.raises(UserError, match=f"no result.json found under {tmp_path}"):
        collect_results([tmp_path])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "result.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        collect_results([tmp_path])


def _video_cells(long_of):
    rows = []
    for ckpt, idf1, ids in [("a", 70.0, 7000), ("b", 72.0, 6900), ("c", 72.0, 7100), ("d", 65.0, 6950)]:
        rows += [{"checkpoint": ckpt, "task": "posetrack", "dataset": "posetrack2018", "metric": "idf1",
                  "value": idf1, "setting": "layer3"},
                 {"checkpoint": ckpt, "task": "posetrack", "dataset": "posetrack2018", "metric": "id_switches",
                  "value": ids, "setting": "layer3", "primary": False, "higher_is_better": False}]
    rows.append({"checkpoint": "MEC", "task": "posetrack", "dataset": "posetrack2018", "metric": "idf1",
                 "value": 73.1, "setting": "layer3", "published": True, "table": "mec-table4",
                 "source": "Liu et al., NeurIPS 2022, Table 4, row 'MEC', column 'IDF1'"})
    return select_cells(aggregate(long_of(rows)))[0]


def test_best_bold_second_underlined_with_ties_and_lower_is_better(long_of):
    (table,) = build_tables(_video_cells(long_of))
    assert [r.label for r in table.rows] == ["MEC †", "a", "b", "c", "d"]   # published first, as in the paper
    assert table.flat_header() == ["PoseTrack / IDF1 ↑ / layer3", "PoseTrack / IDs ↓ / layer3"]
    marks = {r.label: [c.mark if c else None for c in r.cells] for r in table.rows}
    # IDF1: MEC 73.1 best; b and c tie at 72.0 and share rank 2.  IDs: fewest switches (b) best.
    assert marks == {"MEC †": ["best", None], "a": ["", ""], "b": ["second", "best"], "c": ["second", ""],
                     "d": ["", "second"]}
    assert [r.cells[1].text for r in table.rows[1:]] == ["7000", "6900", "7100", "6950"]   # counts: no decimals
    html = table_html(table)
    assert "<tr class='pub'><td>MEC †</td><td class='best' title='Liu et al., NeurIPS 2022, Table 4" in html
    assert "<td class='best'><span class='v'>6900</span></td>" in html
    assert "<td class='second'><span class='v'>72.0</span></td>" in html
    assert any(note.startswith("† published number") and "Table 4" in note for note in table.footnotes)
    md = table_markdown(table)
    assert "| *MEC †* | **73.1** | – |" in md and "| b | <u>72.0</u> | **6900** |" in md


def test_protocol_superscripts_seeds_and_transfer_layout(long_of):
    rows = [{"checkpoint": "a", "task": "linear-fast", "dataset": "digits", "value": v, "protocol": "fast", "seed": s}
            for s, v in enumerate([90.0, 91.0, 92.0])]
    rows += [{"checkpoint": c, "task": "transfer-linear", "dataset": d, "metric": m, "value": v}
             for c, d, m, v in [("a", "aircraft", "mean_per_class", 50.0), ("a", "food101", "top1", 70.0),
                                ("b", "food101", "top1", 71.0)]]
    rows.append({"checkpoint": "a", "task": "transfer-linear", "dataset": "food101", "metric": "top5", "value": 90.0,
                 "primary": False})
    probe, transfer = build_tables(select_cells(aggregate(long_of(rows)))[0])
    cell = probe.rows[0].cells[0]
    assert (cell.text, cell.n, cell.tag) == ("91.0 ± 1.0", 3, "fast")
    assert probe.flat_header()[0] == "Linear probing (linear-fast) [digits] / Top-1 ↑"
    expected = "<td class='best'><span class='v'>91.0 ± 1.0</span> <span class='n'>(3)</span><sup class='proto'>fast"
    assert expected in table_html(probe)
    # Table 8 layout: datasets as columns in the paper's order, primary metric only.
    assert transfer.flat_header() == ["Food101 / Top-1 ↑", "Aircraft / mean/class ↑"]
    assert [[c.text if c else None for c in r.cells] for r in transfer.rows] == [["70.0", "50.0"], ["71.0", None]]


def test_diagnostics_have_their_own_unranked_table(long_of):
    rows = [{"checkpoint": c, "task": "diagnostics", "dataset": "digits", "metric": "effective_rank", "value": v}
            for c, v in [("a", 40.0), ("b", 42.0)]]
    rows.append({"checkpoint": "a", "task": "knn", "dataset": "digits", "value": 90.0})
    cells = select_cells(aggregate(long_of(rows)))[0]
    assert [t.title for t in build_tables(cells)] == ["Linear probing and k-NN (MEC Table 1 layout)"]
    diag = diagnostics_table(cells)
    assert diag.flat_header() == ["diagnostics [digits] / effective rank"]
    assert all(c.mark == "" for r in diag.rows for c in r.cells)
    assert diagnostics_table(cells[cells["task"] == "knn"]) is None


def test_provenance_lists_file_short_sha_method_epochs(tmp_path, write_run):
    write_run(tmp_path, "mec-last", "knn", "digits", {"top1": 90.0})
    table = provenance_table(collect_results([tmp_path]))
    (row,) = table.rows
    sha = row.cells[1]
    assert row.label == "mec-last" and row.cells[0].text == "/ckpts/mec-last.pt" and len(sha.title) == 64
    assert sha.text == sha.title[:12] and [c.text for c in row.cells[2:]] == ["mec", "40", "mec-eval"]
    assert f"title='{sha.title}'>" in table_html(table)


def test_document_renders_html_markdown_and_csv(tmp_path, write_run):
    tasks = [("linear", "imagenet", "top1", 70.0), ("semi-1pct", "imagenet", "top1", 50.0),
             ("voc07", "pascal-voc", "AP", 45.0)]
    for ckpt, shift in [("mec", 2.0), ("byol", 0.0), ("random", -30.0)]:
        for task, dataset, metric, value in tasks:
            write_run(tmp_path, ckpt, task, dataset, {metric: value + shift})
    report = build_document(collect_results([tmp_path]), "t")
    html = render_html(report)
    assert html.count("<svg") == 1 and "Paper axes without results: COCO, SEG." in html
    assert "<td class='best'><span class='v'>72.0</span></td>" in html
    md = render_markdown(report)
    assert "| mec | 1 | 1 | 1 | **" in md and "## Checkpoints" in md
    files = csv_files(report)
    results = pd.read_csv(io.StringIO(files["results.csv"]))
    assert list(results.columns[:8]) == ["checkpoint", "task", "dataset", "metric", "value", "protocol", "seed",
                                         "source"]
    assert len(results) == 9 and results["source"].str.endswith("result.json").all()
    ranks = pd.read_csv(io.StringIO(files["ranks.csv"]))
    assert list(ranks.columns[:4]) == ["checkpoint", "axis", "value", "rank"]
    lin = ranks[ranks.axis == "LIN"].set_index("checkpoint")
    assert lin["rank"].to_dict() == {"byol": 2, "mec": 1, "random": 3} and lin.loc["mec", "value"] == 72.0
