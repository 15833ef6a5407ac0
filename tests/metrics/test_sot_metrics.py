"""OTB success AUC / precision: hand cases, the 21-threshold convention, torchvision IoU, hostile files."""
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from mec_eval.metrics.sot import (
    THRESHOLDS,
    evaluate_sot,
    mean_scores,
    overlaps,
    sot_scores,
)
from mec_eval.utils import UserError


def _boxes(n, x=10.0, y=20.0, w=10.0, h=10.0):
    return np.tile([x, y, w, h], (n, 1))


def test_thresholds_are_otb_21():
    assert len(THRESHOLDS) == 21 and THRESHOLDS[0] == 0 and THRESHOLDS[-1] == 1
    assert np.allclose(np.diff(THRESHOLDS), 0.05)


def test_perfect_tracker_is_20_of_21():
    scores = sot_scores(_boxes(5), _boxes(5))
    # IoU 1 is not > 1: the last threshold fails, so AUC = 20 / 21 (OTB / pysot convention).
    assert scores["auc"] == pytest.approx(100 * 20 / 21) and scores["precision_20"] == 100


def test_constant_offsets():
    gt = _boxes(4)
    half = sot_scores(gt, _boxes(4, x=15.0))      # IoU 50 / 150 = 1/3: thresholds 0 .. 0.30 succeed
    assert half["auc"] == pytest.approx(100 * 7 / 21) and half["precision_20"] == 100
    big = sot_scores(_boxes(4, w=100, h=100), _boxes(4, x=35.0, w=100, h=100))  # IoU 0.6, 25 px off
    assert big["auc"] == pytest.approx(100 * 12 / 21) and big["precision_20"] == 0
    far = sot_scores(gt, _boxes(4, x=500.0))
    assert far["auc"] == 0 and far["precision_20"] == 0


def test_overlaps_match_torchvision():
    rng = np.random.default_rng(0)
    gt = np.concatenate([rng.uniform(0, 50, (30, 2)), rng.uniform(1, 30, (30, 2))], axis=1)
    pred = np.concatenate([rng.uniform(0, 50, (30, 2)), rng.uniform(1, 30, (30, 2))], axis=1)
    xyxy = lambda b: torch.tensor(np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1))
    reference = torch.diag(box_iou(xyxy(gt), xyxy(pred))).numpy()
    assert np.allclose(overlaps(gt, pred), reference)


def test_frames_without_ground_truth_area():
    gt, pred = _boxes(2), _boxes(2)
    gt[1, 2] = 0  # OTB toolkit: IoU -1 (a failure at every threshold), centre error -1 (a hit)
    scores = sot_scores(gt, pred)
    assert scores["auc"] == pytest.approx(100 * 0.5 * 20 / 21) and scores["precision_20"] == 100


def test_mean_over_sequences_averages_curves():
    a, b = sot_scores(_boxes(3), _boxes(3)), sot_scores(_boxes(2), _boxes(2, x=500.0))
    assert mean_scores([a, b])["auc"] == pytest.approx(100 * 10 / 21)


@pytest.mark.parametrize("separator", [",", "\t", " ", ", "])
def test_evaluate_sot_reads_otb_separators(tmp_path, separator):
    gt, res = tmp_path / "gt.txt", tmp_path / "res.txt"
    gt.write_text("10,20,10,10\n10,20,10,10\n")
    res.write_text(f"10{separator}20{separator}10{separator}10\n\n15{separator}20{separator}10{separator}10\n")
    scores = evaluate_sot(gt, res)
    assert scores["n_frames"] == 2 and scores["auc"] == pytest.approx(100 * (20 + 7) / 42)


@pytest.mark.parametrize("content,match", [("1,2,3\n", "4 numbers"), ("a,b,c,d\n", "4 numbers"),
                                           ("1,2,3,nan\n", "4 numbers"), ("", "no boxes"),
                                           (b"\xff\xfe\x00\x01", "not text")])
def test_hostile_rect_files(tmp_path, content, match):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "gt.txt").write_text("1,2,3,4\n")
    with pytest.raises(UserError, match=match):
        evaluate_sot(tmp_path / "gt.txt", bad)


def test_missing_folder_and_length_mismatch(tmp_path):
    (tmp_path / "gt.txt").write_text("1,2,3,4\n1,2,3,4\n")
    (tmp_path / "one.txt").write_text("1,2,3,4\n")
    with pytest.raises(UserError, match="does not exist"):
        evaluate_sot(tmp_path / "gt.txt", tmp_path / "missing.txt")
    with pytest.raises(UserError, match="folder"):
        evaluate_sot(tmp_path / "gt.txt", tmp_path)
    with pytest.raises(UserError, match="one box per frame"):
        evaluate_sot(tmp_path / "gt.txt", tmp_path / "one.txt")
