"""PoseTrack multi-person tracking scores per the poseval convention (Andriluka et al., CVPR 2018).

Each of the 17 joints is tracked as its own point set: in every labelled frame the visible gt
joints are matched to the predicted ones of the same joint when the PCKh distance ||gt - pred|| /
head size is <= 0.5, head size = 0.6 x the diagonal of the gt head box (poseval ``SC_BIAS``). A
motmetrics 1.4.0 accumulator per joint and sequence gives IDF1, MOTA and ID switches, aggregated as
poseval ``evaluateTracking.computeMetrics`` does (see :func:`score_pose_tracking`): ``idf1`` and
``mota`` are means over joints (percent), ``id_switches`` the sum over joints; per joint in "per_joint".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mec_eval.utils import UserError

SC_BIAS = 0.6          # poseval: head size = 0.6 * ||head box diagonal||
PCKH_THRESHOLD = 0.5
NUM_JOINTS = 17


@dataclass
class PoseFrame:
    """One labelled frame: gt track ids [N], keypoints [N, 17, 3], head boxes [N, 4] (x, y, w, h);
    predicted track ids [M] and keypoints [M, 17, 3] (third value: > 0 present)."""
    gt_ids: np.ndarray
    gt_keypoints: np.ndarray
    gt_heads: np.ndarray
    pred_ids: np.ndarray
    pred_keypoints: np.ndarray


def _joint_distances(frame: PoseFrame, joint: int):
    gt_vis = frame.gt_keypoints[:, joint, 2] > 0
    pr_vis = frame.pred_keypoints[:, joint, 2] > 0
    gt, pr = frame.gt_keypoints[gt_vis, joint, :2], frame.pred_keypoints[pr_vis, joint, :2]
    heads = SC_BIAS * np.linalg.norm(frame.gt_heads[gt_vis, 2:4], axis=1)
    dist = np.linalg.norm(gt[:, None] - pr[None], axis=2) / np.maximum(heads[:, None], 1e-12)
    dist = np.where(dist <= PCKH_THRESHOLD, dist, np.nan)
    return frame.gt_ids[gt_vis], frame.pred_ids[pr_vis], dist


def score_pose_tracking(sequences: list) -> dict:
    """poseval ``computeMetrics`` aggregation over ``sequences`` (each a list of labelled :class:`PoseFrame`):
    one motmetrics accumulator per joint and sequence; per joint, MOTA from the misses, false positives
    and switches summed over sequences, IDF1 the mean of the sequences' IDF1, ID switches the sum; the
    totals are the means over joints of MOTA and IDF1 (percent) and the *sum* over joints of the ID
    switches (poseval ``num_switches[total] = sum``). A joint with no visible gt is left out, as poseval's
    NaN. Unlike poseval, the last frame of each sequence is scored too (poseval drops it, ``imgidxs[:-1]``)."""
    import motmetrics as mm

    host = mm.metrics.create()
    names = ["num_misses", "num_switches", "num_false_positives", "num_objects", "idf1"]
    totals = np.zeros((NUM_JOINTS, 4))
    idf1 = [[] for _ in range(NUM_JOINTS)]
    for frames in sequences:
        accumulators = [mm.MOTAccumulator(auto_id=True) for _ in range(NUM_JOINTS)]
        for frame in frames:
            for joint, acc in enumerate(accumulators):
                gt_ids, pr_ids, dist = _joint_distances(frame, joint)
                acc.update(gt_ids.tolist(), pr_ids.tolist(), dist)
        for joint, acc in enumerate(accumulators):
            m = host.compute(acc, metrics=names, return_dataframe=False, name="acc")
            totals[joint] += [m["num_misses"], m["num_switches"], m["num_false_positives"], m["num_objects"]]
            if m["num_objects"] > 0:
                idf1[joint].append(float(m["idf1"]))
    per_joint = []
    for joint in range(NUM_JOINTS):
        misses, switches, false_pos, objects = totals[joint]
        per_joint.append(None if objects == 0 else {
            "idf1": 100 * float(np.mean(idf1[joint])), "mota": 100 * (1 - (misses + switches + false_pos) / objects),
            "id_switches": int(switches)})
    scored = [j for j in per_joint if j is not None]
    if not scored:
        raise UserError("PoseTrack scoring: no visible gt joint in any labelled frame")
    return {"idf1": float(np.mean([j["idf1"] for j in scored])), "mota": float(np.mean([j["mota"] for j in scored])),
            "id_switches": int(sum(j["id_switches"] for j in scored)), "per_joint": per_joint}


def frames_from_json(gt: dict, pred: dict, gt_name: str, pred_name: str, id_offset: int = 0) -> list[PoseFrame]:
    """Labelled :class:`PoseFrame` s of one sequence from a PoseTrack 2018 gt and a prediction JSON;
    ``id_offset`` is added to every track id (sequences scored together keep their ids apart)."""
    from mec_eval.data.posetrack import _by_image

    images = [im for im in gt["images"] if im.get("is_labeled", True)]
    ids = {im["id"] for im in gt["images"]}
    gt_by, pr_by = _by_image(Path(gt_name), gt, ids, given=False), _by_image(Path(pred_name), pred, ids, given=False)
    frames = []
    for im in images:
        g, p = gt_by.get(im["id"], []), pr_by.get(im["id"], [])
        if any(pose.head_box is None for pose in g):
            raise UserError(f"{gt_name}: a gt person of image {im['id']} has no bbox_head (PCKh needs it)")
        frames.append(PoseFrame(
            np.array([pose.track_id for pose in g], dtype=int) + id_offset,
            np.array([pose.keypoints for pose in g]).reshape(-1, 17, 3),
            np.array([pose.head_box for pose in g]).reshape(-1, 4),
            np.array([pose.track_id for pose in p], dtype=int) + id_offset,
            np.array([pose.keypoints for pose in p]).reshape(-1, 17, 3)))
    return frames


def evaluate_posetrack(gt_folder, results_folder, names=None) -> dict:
    """Score ``<results>/<seq>.json`` (PoseTrack 2018 format with track ids) against ``<gt>/<seq>.json``
    (every gt sequence, or those in ``names``)."""
    from mec_eval.data.posetrack import read_json

    gt_folder, results_folder = Path(gt_folder), Path(results_folder)
    if not gt_folder.is_dir() or not results_folder.is_dir():
        raise UserError(f"{gt_folder} and {results_folder} must be folders of PoseTrack 2018 <seq>.json files")
    names = sorted(p.stem for p in gt_folder.glob("*.json") if not names or p.stem in names)
    if not names:
        raise UserError(f"{gt_folder} holds no <seq>.json file (PoseTrack 2018 annotations/val)")
    sequences = []
    for name in names:
        gt_path, pred_path = gt_folder / f"{name}.json", results_folder / f"{name}.json"
        if not pred_path.is_file():
            raise UserError(f"{results_folder} lacks {name}.json (one prediction file per gt sequence)")
        sequences.append(frames_from_json(read_json(gt_path), read_json(pred_path), str(gt_path), str(pred_path)))
    return score_pose_tracking(sequences)
