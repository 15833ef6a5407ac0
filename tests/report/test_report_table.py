
import pandas as pd
import pytest

from mec_eval.report import collect_results, results_table, write_html_report
from mec_eval.runs import build_result, write_result
from mec_eval.utils import UserError


def _write(root, ckpt, task, seed, value, epoch=None):
    result = build_result(task=task, dataset="digits", protocol="paper" if task == "knn" else "fast",
                          checkpoint={"name": ckpt, "path": f"/x/{ckpt}.pt", "sha256": None, "method": ckpt, "epoch": epoch},
                          metrics={"top1": value, "top5": 99.0}, primary="top1", higher_is_better=True,
                          config={}, seed=seed, started="2026-01-01T00:00:00+00:00", duration_s=1.0)
    write_result(root / task / ckpt / f"h{seed}", result)


def test_seeds_aggregate_to_mean_and_std_and_best_is_bold(tmp_path):
    for seed, (a, b) in enumerate([(70.0, 60.0), (72.0, 62.0)]):
        _write(tmp_path, "mec", "knn", seed, a, epoch=40)
        _write(tmp_path, "random", "knn", seed, b)
    _write(tmp_path, "mec", "linear-fast", 0, 90.0, epoch=40)
    long = collect_results([tmp_path])
    assert len(long) == 10 and set(long.protocol) == {"paper", "fast"}
    table = results_table(long)
    assert table.loc["mec", ("knn", "digits", "top1")] == pytest.approx(71.0)
    assert table.attrs["std"].loc["mec", ("knn", "digits", "top1")] == pytest.approx(1.0)
    assert pd.isna(table.loc["random", ("linear-fast", "digits", "top1")])
    html = write_html_report(long, table, tmp_path / "r.html").read_text()
    assert "<td class='best'>71.00 &plusmn; 1.00</td>" in html
    assert "<td class='second'>61.00 &plusmn; 1.00</td>" in html
    assert "<td>40</td>" in html and "&ndash;" in html  # integral epoch, missing cell


def test_no_results_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no result.json"):
        collect_results([tmp_path])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "result.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        collect_results([tmp_path])
