"""UniTrack PoseTrack on PoseTrack 2018 val (given poses): pose -> mask, masked embeddings, poseval-style scores."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mec_eval.data import shapes_tracking
from mec_eval.data.posetrack import PoseTrackSequences
from mec_eval.metrics.posetrack import evaluate_posetrack
from mec_eval.tasks.association import Detections
from mec_eval.tasks.mot import TrackingTask, mask_embeddings
from mec_eval.tasks.tracking_configs import TrackingConfig
from mec_eval.utils import UserError, atomic_write_text

TORSO = (5, 6, 12, 11)  # COCO / PoseTrack shoulders and hips
LIMBS = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
         (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))  # the COCO skeleton


def pose_mask(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """UniTrack's pose -> mask: the torso polygon of the present joints plus the limbs as lines
    (width 1/10 of the pose's box diagonal, at least 2 px); an empty result falls back to the pose box."""
    present = keypoints[:, 2] > 0
    image = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(image)
    pts = keypoints[present, :2]
    diag = float(np.linalg.norm(pts.max(0) - pts.min(0))) if len(pts) else 0.0
    line = max(2, int(round(diag / 10)))
    torso = [tuple(keypoints[j, :2]) for j in TORSO if present[j]]
    if len(torso) >= 3:
        draw.polygon(torso, fill=1)
    for a, b in LIMBS:
        if present[a] and present[b]:
            draw.line([tuple(keypoints[a, :2]), tuple(keypoints[b, :2])], fill=1, width=line)
    mask = np.array(image, dtype=bool)
    if not mask.any() and len(pts):
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
        mask[max(y0, 0):max(y1, 1), max(x0, 0):max(x1, 1)] = True
    return mask


class PoseTrackTask(TrackingTask):
    name = "posetrack"
    Config = TrackingConfig
    result_ext = ".json"
    metric_names = ("idf1", "id_switches", "mota")

    def sequences(self, cfg: TrackingConfig):
        if cfg.data.name == "shapes-video":
            root = shapes_tracking.write_shapes_posetrack(self.synthetic_root(cfg), self.video_spec(cfg))
            poses = cfg.data.detections or root / "poses"
        elif cfg.data.name == "posetrack2018":
            root, poses = cfg.data.root, cfg.data.detections
            if not poses:
                raise UserError("posetrack2018 needs the given poses: set data.detections=FOLDER of <seq>.json "
                                "files in the PoseTrack 2018 format")
        else:
            raise UserError(f"task posetrack reads posetrack2018 or shapes-video, not {cfg.data.name}")
        data = PoseTrackSequences(root, poses, cfg.data.sequences or None)
        data.dirs = [Path(root) / "annotations" / "val" / n for n in data.names]
        return data

    def detections(self, feat, geometry, annotation, cfg, stride):
        scale, px, py, height, width = geometry
        poses = annotation["det"]
        masks = np.stack([pose_mask(p.keypoints, height, width) for p in poses]) if poses else None
        boxes = np.array([_box(m) for m in masks]).reshape(-1, 4) if poses else np.zeros((0, 4))
        fh, fw = round(height * scale / stride), round(width * scale / stride)
        y0, x0 = round(py / stride), round(px / stride)
        embeds = mask_embeddings(feat[:, y0:y0 + max(fh, 1), x0:x0 + max(fw, 1)], masks, cfg.data.max_cells) \
            if poses else []
        return Detections(boxes, np.array([p.score for p in poses]), embeds, masks), poses

    def write(self, path: Path, seq, outputs: list, cfg: TrackingConfig) -> None:
        images, anns = [], []
        for (frame, matches, poses), annotation in zip(outputs, seq.annotations):
            images.append({"id": annotation["image_id"], "file_name": str(seq.frames.paths[frame - 1].name),
                           "is_labeled": annotation["labeled"]})
            anns += [{"image_id": annotation["image_id"], "track_id": int(track_id), "category_id": 1,
                      "keypoints": np.round(poses[j].keypoints, 2).ravel().tolist(), "score": poses[j].score}
                     for track_id, j in matches]
        atomic_write_text(path, json.dumps({"images": images, "annotations": anns}))

    def score(self, data, tracks_dir: Path, cfg: TrackingConfig) -> dict:
        scores = evaluate_posetrack(Path(data.root) / "annotations" / "val", tracks_dir, names=data.names)
        scores["per_joint"] = [None if j is None else {k: round(v, 3) for k, v in j.items()}
                               for j in scores["per_joint"]]
        return scores


def _box(mask: np.ndarray) -> tuple:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) if len(rows) else (0, 0, 1, 1)
