"""PoseTrack 2018 val reader: ``annotations/val/<seq>.json`` (COCO-style, 17 keypoints) and ``images/val/<seq>/``.

Each JSON has ``images`` (``id``, ``file_name`` relative to ROOT, ``frame_id``, ``is_labeled``),
``annotations`` (``image_id``, ``track_id``, ``keypoints`` 17 x (x, y, v), ``bbox_head`` x, y, w, h)
and ``categories``. The given poses (what the tracker associates) are a folder of JSON files in the
same format, ``<poses>/<seq>.json``, whose ``track_id`` is not read and whose keypoint third value
is a confidence; a pose's score is ``score`` when present, else the mean keypoint confidence.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mec_eval.data.frames import LazyFrames
from mec_eval.utils import UserError

NUM_JOINTS = 17
POSETRACK_LAYOUT = ("ROOT/annotations/val/<seq>.json (PoseTrack 2018: images, annotations with 17x3 keypoints, "
                    "track_id, bbox_head) and ROOT/<file_name> images (images/val/<seq>/000000.jpg ...)")


@dataclass
class Pose:
    """One person in one frame: keypoints [17, 3] (x, y, visibility or confidence), track id, head box, score."""
    keypoints: np.ndarray
    track_id: int = -1
    head_box: np.ndarray | None = None
    score: float = 1.0


@dataclass
class PoseSequence:
    """A video item: name, lazy frames, per-frame {"gt": [Pose], "det": [Pose], "labeled": bool, "image_id"}."""
    name: str
    frames: LazyFrames
    annotations: list = field(repr=False)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing; expected {POSETRACK_LAYOUT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations", []), list):
        raise UserError(f"{path}: a PoseTrack 2018 file is an object with lists 'images' and 'annotations'")
    return data


def _pose(path: Path, index: int, ann: dict, given: bool) -> Pose:
    try:
        keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(NUM_JOINTS, 3)
        head = ann.get("bbox_head")
        head = None if head is None else np.asarray(head, dtype=np.float64).reshape(4)
        track = int(ann.get("track_id", -1)) if not given else -1
        score = float(ann["score"]) if given and "score" in ann else (
            float(np.mean(keypoints[:, 2])) if given else 1.0)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: annotation {index} needs 'keypoints' of {NUM_JOINTS}x3 numbers"
                        f"{'' if given else ', an integer track_id'} and optionally bbox_head [x, y, w, h]") from None
    if not np.all(np.isfinite(keypoints)) or (head is not None and not np.all(np.isfinite(head))):
        raise UserError(f"{path}: annotation {index} has non-finite keypoints or head box")
    return Pose(keypoints, track, head, score)


def _by_image(path: Path, data: dict, ids: set, given: bool) -> dict:
    out: dict = {}
    for index, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict) or ann.get("image_id") not in ids:
            raise UserError(f"{path}: annotation {index} has no image_id of this file's images")
        if given or "keypoints" in ann:  # gt persons without keypoints (crowd boxes) are not scored by poseval
            out.setdefault(ann["image_id"], []).append(_pose(path, index, ann, given))
    return out


def load_posetrack_sequence(root, name: str, poses=None) -> PoseSequence:
    """One val sequence: frames in ``frame_id`` order, gt poses and the given poses."""
    root = Path(root)
    gt_path = root / "annotations" / "val" / f"{name}.json"
    data = read_json(gt_path)
    try:
        images = sorted(data["images"], key=lambda im: int(im.get("frame_id", im["id"])))
        ids = {im["id"] for im in images}
        files = [str(im["file_name"]) for im in images]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{gt_path}: every image needs 'id', 'file_name' (and 'frame_id')") from None
    if not images or any(Path(f).is_absolute() or ".." in Path(f).parts for f in files):
        raise UserError(f"{gt_path}: images must be listed, with file_name relative to the root")
    gt = _by_image(gt_path, data, ids, given=False)
    given = {}
    if poses:
        path = Path(poses) / f"{name}.json"
        pose_data = read_json(path)
        given = _by_image(path, pose_data, ids, given=True)
    annotations = [{"image_id": im["id"], "labeled": bool(im.get("is_labeled", True)),
                    "gt": gt.get(im["id"], []), "det": given.get(im["id"], [])} for im in images]
    return PoseSequence(name, LazyFrames([root / f for f in files]), annotations)


def sequence_names(root, names: list[str] | None = None) -> list[str]:
    """The val sequences (JSON stems) of a PoseTrack 2018 root, all or ``names``."""
    if not root:
        raise UserError(f"data.root is not set; expected {POSETRACK_LAYOUT}")
    folder = Path(root) / "annotations" / "val"
    if not folder.is_dir():
        raise UserError(f"{root} has no annotations/val folder; expected {POSETRACK_LAYOUT}")
    found = sorted(p.stem for p in folder.glob("*.json"))
    if not found:
        raise UserError(f"{folder} holds no .json file; expected {POSETRACK_LAYOUT}")
    missing = [n for n in (names or []) if n not in found]
    if missing:
        raise UserError(f"{folder} has no sequence {', '.join(map(repr, missing[:5]))}")
    return list(names) if names else found


class PoseTrackSequences:
    """The val sequences of a PoseTrack 2018 root as a dataset of :class:`PoseSequence` items."""

    def __init__(self, root, poses=None, names: list[str] | None = None):
        self.root, self.poses, self.names = root, poses, sequence_names(root, names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> PoseSequence:
        return load_posetrack_sequence(self.root, self.names[index], self.poses)


def build_posetrack2018(root, split: str, transform=None) -> PoseTrackSequences:
    return PoseTrackSequences(root)
