"""PoseTrack scores (poseval convention) on hand-made pose tracks with known IDF1 / MOTA / ID switches."""
import json

import numpy as np
import pytest

from mec_eval.metrics.posetrack import NUM_JOINTS, SC_BIAS, PoseFrame, evaluate_posetrack, score_pose_tracking
from mec_eval.utils import UserError

pytest.importorskip("motmetrics")
HEAD = np.array([[0.0, 0.0, 10.0, 10.0]])          # head size 0.6 * sqrt(200) = 8.485 px
THRESHOLD_PX = 0.5 * SC_BIAS * np.hypot(10, 10)    # PCKh 0.5: 4.243 px


def _pose(shift=0.0, visible=NUM_JOINTS):
    kp = np.zeros((NUM_JOINTS, 3))
    kp[:, 0], kp[:, 1] = np.arange(NUM_JOINTS) * 20.0 + shift, 50.0
    kp[:visible, 2] = 1
    return kp


def _frame(gt_id, pred_ids, shift=0.0, visible=NUM_JOINTS):
    preds = np.array([_pose(shift, visible) for _ in pred_ids]).reshape(-1, NUM_JOINTS, 3)
    return PoseFrame(np.array([gt_id]), _pose(visible=visible)[None], HEAD, np.array(pred_ids, dtype=int), preds)


def test_one_id_switch_per_joint():
    # gt person 1 in 4 frames; the tracker calls it 7 twice, then 8 twice
    scores = score_pose_tracking([[_frame(1, [7]), _frame(1, [7]), _frame(1, [8]), _frame(1, [8])]])
    assert scores["id_switches"] == NUM_JOINTS           # poseval: the sum over joints
    assert scores["mota"] == pytest.approx(75.0)         # 1 - 1 switch / 4 objects, every joint
    assert scores["idf1"] == pytest.approx(50.0)         # IDTP 2 of 4 gt and 4 predicted
    assert all(j["id_switches"] == 1 for j in scores["per_joint"])


def test_pckh_threshold_decides_a_match():
    near = score_pose_tracking([[_frame(1, [3], shift=THRESHOLD_PX - 0.05)]])
    far = score_pose_tracking([[_frame(1, [3], shift=THRESHOLD_PX + 0.05)]])
    assert near["mota"] == pytest.approx(100.0) and near["idf1"] == pytest.approx(100.0)
    assert far["mota"] == pytest.approx(-100.0)          # a miss and a false positive per joint
    assert far["idf1"] == pytest.approx(0.0)


def test_idf1_is_the_mean_over_sequences_and_mota_pools_counts():
    a = [_frame(1, [5])] * 4                             # IDF1 1, no error
    b = [_frame(1, [5]), _frame(1, [6])]                 # IDF1 0.5, one switch
    scores = score_pose_tracking([a, b])
    assert scores["idf1"] == pytest.approx(75.0)         # poseval: mean of per-sequence IDF1 (pooled: 83.3)
    assert scores["mota"] == pytest.approx(100 * (1 - 1 / 6))
    assert scores["id_switches"] == NUM_JOINTS


def test_joints_never_visible_are_left_out():
    scores = score_pose_tracking([[_frame(1, [2], visible=12)] * 3])
    assert scores["per_joint"][12:] == [None] * (NUM_JOINTS - 12)
    assert scores["idf1"] == pytest.approx(100.0) and scores["id_switches"] == 0


def test_no_visible_joint_is_a_user_error():
    with pytest.raises(UserError, match="no visible gt joint"):
        score_pose_tracking([[_frame(1, [2], visible=0)]])


def _write(folder, name, anns, head=True):
    images = [{"id": t, "file_name": f"images/val/{name}/{t:06d}.jpg", "frame_id": t, "is_labeled": True}
              for t in range(3)]
    anns = [{**a, "bbox_head": HEAD[0].tolist()} if head else dict(a) for a in anns]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"images": images, "annotations": anns}))


def test_evaluate_posetrack_on_files(tmp_path):
    gt = [{"image_id": t, "track_id": 1, "keypoints": _pose().ravel().tolist()} for t in range(3)]
    pred = [{"image_id": t, "track_id": 4 if t < 2 else 9, "keypoints": _pose().ravel().tolist()} for t in range(3)]
    _write(tmp_path / "gt", "seq_a", gt)
    _write(tmp_path / "pred", "seq_a", pred, head=False)
    scores = evaluate_posetrack(tmp_path / "gt", tmp_path / "pred")
    assert scores["id_switches"] == NUM_JOINTS
    assert scores["mota"] == pytest.approx(100 * (1 - 1 / 3))


def test_evaluate_posetrack_hostile(tmp_path):
    gt = [{"image_id": 0, "track_id": 1, "keypoints": _pose().ravel().tolist()}]
    _write(tmp_path / "gt", "seq_a", gt)
    (tmp_path / "pred").mkdir()
    with pytest.raises(UserError, match="lacks seq_a.json"):
        evaluate_posetrack(tmp_path / "gt", tmp_path / "pred")
    (tmp_path / "pred" / "seq_a.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable JSON"):
        evaluate_posetrack(tmp_path / "gt", tmp_path / "pred")
    _write(tmp_path / "gt2", "seq_a", gt, head=False)
    _write(tmp_path / "pred", "seq_a", [])
    with pytest.raises(UserError, match="bbox_head"):
        evaluate_posetrack(tmp_path / "gt2", tmp_path / "pred")
    with pytest.raises(UserError, match="must be folders"):
        evaluate_posetrack(tmp_path / "nowhere", tmp_path / "pred")
