"""Ranking and radar geometry on hand-made inputs: ties, missing values, lower-is-better, axis choice."""
import math

import numpy as np
import pandas as pd
import pytest

from mec_eval.report.collect import aggregate, select_cells
from mec_eval.report.rank import (build_comparisons, build_radar, max_area, polygon_area, rank_values,
                                  ranks_frame)

IMAGE_KEYS = [("linear", "imagenet", "top1"), ("semi-1pct", "imagenet", "top1"), ("voc0712", "pascal-voc", "AP"),
              ("coco", "coco2017", "bbox_AP"), ("coco", "coco2017", "segm_AP")]


def _cells(long_of, rows):
    return select_cells(aggregate(long_of(rows)))[0]


def _grid(values: dict[str, list], keys) -> list[dict]:
    """Rows for checkpoint -> one value per (task, dataset, metric) key; None leaves the cell out."""
    return [{"checkpoint": ckpt, "task": t, "dataset": d, "metric": m, "value": v}
            for ckpt, vals in values.items() for (t, d, m), v in zip(keys, vals) if v is not None]


def _shoelace(radii) -> float:
    """Polygon area from Cartesian vertices (an independent formulation of the radar area)."""
    theta = np.linspace(0, 2 * np.pi, len(radii), endpoint=False)
    x, y = np.asarray(radii) * np.cos(theta), np.asarray(radii) * np.sin(theta)
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_ties_share_the_better_rank_and_missing_values_stay_missing():
    ranks = rank_values(pd.Series({"a": 90.0, "b": 90.0, "c": 80.0, "d": np.nan}), higher_is_better=True)
    assert ranks[["a", "b", "c"]].tolist() == [1.0, 1.0, 3.0] and math.isnan(ranks["d"])


def test_lower_is_better_ranks_the_smallest_first():
    ranks = rank_values(pd.Series({"a": 7000, "b": 6900, "c": 7000}), higher_is_better=False)
    assert ranks.tolist() == [2.0, 1.0, 2.0]


def test_polygon_area_against_hand_computation_and_shoelace():
    assert polygon_area([1, 1, 1, 1]) == pytest.approx(2.0)          # square with diagonal 2
    rng = np.random.default_rng(0)
    for k in (3, 5, 7):
        radii = rng.uniform(0, 5, size=k)
        assert polygon_area(radii) == pytest.approx(_shoelace(radii))
    assert max_area(3, 5) == pytest.approx(9 * 5 * 0.5 * math.sin(2 * math.pi / 5))
    with pytest.raises(ValueError, match="at least 3"):
        polygon_area([1.0, 2.0])


def test_image_radar_ranks_radii_missing_values_and_area(long_of):
    values = {"a": [70, 50, 55, 39, 34], "b": [72, 52, 50, 38, 35], "c": [60, 40, 45, None, 30]}
    chart = build_radar(_cells(long_of, _grid(values, IMAGE_KEYS)), "image", "Image tasks")
    assert [axis.label for axis in chart.axes] == ["LIN", "SEMI", "VOC", "COCO", "SEG"]
    assert chart.reason == "" and chart.missing_axes == []
    assert chart.ranks.loc["b"].tolist() == [1, 1, 2, 2, 1]
    assert chart.radii.loc["a"].tolist() == [2, 2, 3, 3, 2]            # rank 1 of 3 -> radius 3
    assert chart.radii.loc["c"].tolist() == [1, 1, 1, 0, 1]            # missing COCO at the centre
    assert chart.missing_values == {"c": ["COCO"]}
    expected = 0.5 * math.sin(2 * math.pi / 5) * (2 * 2 + 2 * 3 + 3 * 3 + 3 * 2 + 2 * 2)
    assert chart.area["a"] == pytest.approx(expected)
    assert chart.area_share["a"] == pytest.approx(expected / (9 * 5 * 0.5 * math.sin(2 * math.pi / 5)))


def test_video_axes_use_the_better_layer_and_report_missing_tasks(long_of):
    sot = {"task": "sot", "dataset": "otb2015", "metric": "auc_xcorr"}
    rows = [
        {"checkpoint": "a", **sot, "value": 50, "setting": "layer3"},
        {"checkpoint": "a", **sot, "value": 56, "setting": "layer4"},
        {"checkpoint": "b", **sot, "value": 55, "setting": "layer3"},
        {"checkpoint": "b", **sot, "value": 52, "setting": "layer4"},
        {"checkpoint": "a", "task": "vos", "dataset": "davis2017", "metric": "j_mean", "value": 60},
        {"checkpoint": "b", "task": "vos", "dataset": "davis2017", "metric": "j_mean", "value": 62},
        {"checkpoint": "a", "task": "mot", "dataset": "mot16", "metric": "idf1", "value": 70},
        {"checkpoint": "b", "task": "mot", "dataset": "mot16", "metric": "idf1", "value": 70},
        {"checkpoint": "a", "task": "posetrack", "dataset": "posetrack2018", "metric": "id_switches",
         "value": 6000, "higher_is_better": False, "primary": False},
    ]
    chart = build_radar(_cells(long_of, rows), "video", "Video tasks")
    assert chart.values.loc["a", "SOT"] == 56 and chart.values.loc["b", "SOT"] == 55
    assert chart.ranks["SOT"].tolist() == [1, 2] and chart.ranks["VOS"].tolist() == [2, 1]
    assert chart.ranks["MOT"].tolist() == [1, 1]                       # tie shares rank 1
    assert chart.missing_axes == ["MOTS", "PoseTrack"]                 # id_switches is not the IDF1 axis
    assert chart.reason == ""


def test_fallback_tasks_and_datasets_are_named_in_the_labels(long_of):
    keys = [("linear-fast", "digits", "top1"), ("semi-10pct", "imagenet", "top1"), ("voc07", "pascal-voc", "AP")]
    chart = build_radar(_cells(long_of, _grid({"a": [90, 60, 40], "b": [80, 65, 45]}, keys)), "image", "Image")
    assert [axis.label for axis in chart.axes] == ["LIN (fast, digits)", "SEMI (10%)", "VOC (VOC07)"]
    assert chart.missing_axes == ["COCO", "SEG"] and not any("supplementary" in n for n in chart.notes)


def test_supplementary_axes_fill_in_below_three_paper_axes(long_of):
    keys = [("linear-fast", "digits", "top1"), ("knn", "digits", "top1"), ("transfer-linear", "cifar10", "top1"),
            ("transfer-linear", "food101", "top1")]
    values = {"a": [90, 85, 80, 60], "b": [92, 80, 70, None], "c": [70, 75, 75, 50]}
    chart = build_radar(_cells(long_of, _grid(values, keys)), "image", "Image")
    assert [axis.label for axis in chart.axes] == ["LIN (fast, digits)", "kNN (digits)", "T-LIN"]
    t_lin = chart.values["T-LIN"]
    assert t_lin.to_dict() == {"a": 80, "b": 70, "c": 75}              # food101 is not shared by b: left out
    assert any("cifar10" in n and "food101" not in n for n in chart.notes)
    assert any(n.startswith("Fewer than 3 paper axes") for n in chart.notes)
    assert chart.missing_axes == ["SEMI", "VOC", "COCO", "SEG"] and chart.reason == ""


def test_charts_that_cannot_be_drawn_say_why(long_of):
    keys = [("linear-fast", "digits", "top1"), ("knn", "digits", "top1")]
    cells = _cells(long_of, _grid({"a": [90, 85], "b": [80, 86]}, keys))
    image, video = build_radar(cells, "image", "Image"), build_radar(cells, "video", "Video")
    assert "at least 3 axes" in image.reason and "LIN (fast, digits), kNN (digits)" in image.reason
    assert image.ranks["kNN (digits)"].tolist() == [2, 1]             # ranks still exist for ranks.csv
    assert video.reason.startswith("No chart: no results for any of SOT, VOS, MOT, MOTS, PoseTrack")
    alone = build_radar(_cells(long_of, _grid({"a": [1, 2, 3, 4, 5]}, IMAGE_KEYS)), "image", "Image")
    assert "only one checkpoint" in alone.reason


def test_selection_prefers_paper_protocol_longest_schedule_and_ranked_tables(long_of):
    rows = [
        {"checkpoint": "a", "task": "linear", "value": 70.0},
        {"checkpoint": "a", "task": "linear", "value": 65.0, "protocol": "fast"},
        {"checkpoint": "MEC (100 ep)", "method": "mec", "task": "linear", "value": 70.6, "epoch": 100,
         "published": True, "table": "mec-table1"},
        {"checkpoint": "MEC (800 ep)", "method": "mec", "task": "linear", "value": 74.5, "epoch": 800,
         "published": True, "table": "mec-table1"},
        {"checkpoint": "MEC", "method": "mec", "task": "semi-1pct", "value": 55.9, "published": True,
         "table": "mec-table2"},
        {"checkpoint": "MEC (order 1)", "method": "mec", "task": "linear", "value": 70.0, "published": True,
         "table": "mec-table5"},
    ]
    cells, dropped = select_cells(aggregate(long_of(rows)))
    assert dropped == 3
    by = cells.set_index(["entry", "task"])["value"]
    assert by[("a", "linear")] == 70.0 and by[("MEC †", "linear")] == 74.5 and by[("MEC †", "semi-1pct")] == 55.9
    assert set(cells["entry"]) == {"a", "MEC †"}                       # one polygon for the published method


def test_published_rows_rank_only_where_task_dataset_and_metric_match(long_of):
    published = _grid({"P": [70, 50, 55], "Q": [72, 52, 50]}, IMAGE_KEYS[:3])
    for row in published:
        row.update(published=True, table="mec-table1", method=row["checkpoint"].lower())
    digits = [("linear-fast", "digits", "top1"), ("knn", "digits", "top1"), ("transfer-linear", "cifar10", "top1")]
    own = _grid({"x": [71, None, None], "y": [69, None, None]}, IMAGE_KEYS[:3]) + \
        _grid({"x": [90, 80, 70], "y": [91, 70, 70]}, digits)
    cells = _cells(long_of, published + own)
    first, second = build_comparisons(cells)
    paper_chart = first.charts[0]
    assert paper_chart.entries == ["x", "y", "P †", "Q †"]
    assert paper_chart.ranks["LIN"].tolist() == [2, 4, 3, 1] and paper_chart.radii.loc["x"].tolist() == [3, 0, 0]
    own_chart = second.charts[0]
    assert own_chart.entries == ["x", "y"] and [a.label for a in own_chart.axes][0] == "LIN (fast, digits)"
    ranks = ranks_frame([first, second], cells)
    lin = ranks[(ranks.axis == "LIN") & ranks.chart.str.startswith("Among")].set_index("checkpoint")
    assert lin.loc["Q", "rank"] == 1 and bool(lin.loc["Q", "published"]) and not bool(lin.loc["x", "published"])
    t_lin = ranks[ranks.axis == "T-LIN"].set_index("checkpoint")["rank"]
    assert t_lin.tolist() == [1, 1]                                    # 70 vs 70: tie shares the better rank
