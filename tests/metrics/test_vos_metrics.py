"""DAVIS J and F: hand-made masks, an independent distance-transform F, frame/object rules, PNG folders."""
import math

import numpy as np
import pytest
from scipy import ndimage

from mec_eval.data.davis import write_label_png
from mec_eval.metrics.vos import (
    boundary_map,
    boundary_measure,
    evaluate_vos,
    region_similarity,
    sequence_scores,
)
from mec_eval.utils import UserError


def _square(shape, top, left, side):
    mask = np.zeros(shape, dtype=bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_region_similarity_hand_cases():
    gt = np.zeros((4, 4), bool)
    gt[:, :2] = True
    pred = np.zeros((4, 4), bool)
    pred[:2, :2] = True
    assert region_similarity(pred, gt) == 0.5
    assert region_similarity(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    void = np.zeros((4, 4), bool)
    void[2:, :] = True  # the rows where they disagree are void
    assert region_similarity(pred, gt, void) == 1.0


def test_boundary_map_of_a_square():
    b = boundary_map(_square((6, 6), 1, 1, 3))
    # davis2017-evaluation _seg2bmap marks pixels whose right / lower / lower-right neighbour differs.
    # Hence the outer ring above / left of the square and the inner ring at its right / bottom.
    assert b[0, 0] and b[0, 2] and b[3, 3] and b[1, 3] and not b[1, 1] and not b[2, 2] and not b[5, 5]


def _f_by_distance(pred, gt):
    """Independent F: a boundary pixel matches when its Euclidean distance to the other boundary <= r."""
    radius = math.ceil(0.008 * math.hypot(*pred.shape))
    pb, gb = boundary_map(pred), boundary_map(gt)
    p = (ndimage.distance_transform_edt(~gb)[pb] <= radius).mean()
    r = (ndimage.distance_transform_edt(~pb)[gb] <= radius).mean()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.mark.parametrize("shift", [0, 1, 3, 6, 20])
def test_boundary_measure_matches_distance_transform(shift):
    shape = (300, 400)  # tolerance ceil(0.008 * 500) = 4 pixels
    gt, pred = _square(shape, 100, 100, 60), _square(shape, 100, 100 + shift, 60)
    f = boundary_measure(pred, gt)
    assert f == pytest.approx(_f_by_distance(pred, gt))
    assert (f == 1.0) == (shift <= 4)


def test_boundary_empty_cases():
    empty, square = np.zeros((20, 20), bool), _square((20, 20), 5, 5, 5)
    assert boundary_measure(empty, empty) == 1.0
    assert boundary_measure(empty, square) == 0.0 and boundary_measure(square, empty) == 0.0


def test_first_and_last_frames_are_left_out_and_objects_from_first_frame():
    gt = [np.zeros((8, 8), np.uint8) for _ in range(4)]
    for frame in gt:
        frame[:4, :4], frame[4:, 4:] = 1, 2
    pred = [g.copy() for g in gt]
    pred[0][:] = 0
    pred[3][:] = 1
    scores = sequence_scores(gt, pred)
    assert scores["j_per_object"] == [1.0, 1.0] and scores["f_per_object"] == [1.0, 1.0]
    pred[1][4:, 4:] = 0  # object 2 lost in frame 1 of the two scored frames
    assert sequence_scores(gt, pred)["j_per_object"] == [1.0, 0.5]


def test_evaluate_vos_on_png_folders(tmp_path):
    gt_dir, res_dir = tmp_path / "Annotations" / "480p" / "seq", tmp_path / "results" / "seq"
    gt_dir.mkdir(parents=True)
    res_dir.mkdir(parents=True)
    for t in range(3):
        labels = np.zeros((32, 32), np.uint8)
        labels[8:24, 8:24] = 1
        write_label_png(gt_dir / f"{t:05d}.png", labels)
        write_label_png(res_dir / f"{t:05d}.png", labels if t != 1 else np.zeros_like(labels))
    scores = evaluate_vos(tmp_path / "Annotations" / "480p", tmp_path / "results")
    assert scores["j_mean"] == 0 and scores["f_mean"] == 0 and scores["per_sequence"]["seq"]["j"] == 0
    (res_dir / "00002.png").unlink()
    with pytest.raises(UserError, match="lack 1 frame"):
        evaluate_vos(tmp_path / "Annotations" / "480p", tmp_path / "results")
    with pytest.raises(UserError, match="does not exist"):
        evaluate_vos(tmp_path / "nowhere", tmp_path / "results")
    (res_dir / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    write_label_png(res_dir / "00002.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(UserError, match="corrupt"):
        evaluate_vos(tmp_path / "Annotations" / "480p", tmp_path / "results")


def test_size_mismatch_is_refused():
    with pytest.raises(UserError, match="sizes differ"):
        sequence_scores([np.ones((4, 4), np.uint8)] * 3, [np.ones((4, 5), np.uint8)] * 3)
