"""Write the synthetic shapes videos (:mod:`mec_eval.data.shapes_video`) in the MOT16, MOTS20, PoseTrack 2018 layouts.

Besides the ground truth, each writer adds the observations a tracker is given, made noisy on purpose
(seeded): boxes / masks / keypoints jittered, about 10 % of the objects missed per frame, and an
occasional false positive with a lower score. ``VideoSpec.crossing_miss`` adds misses where objects
cross: an object whose box overlaps another's is left out with that probability, so that box overlap
and motion alone lose the objects at the crossings and appearance must re-identify them. A folder is written
to a temp sibling and renamed into place, so it either exists whole or not at all; an existing complete one
is re-used.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mec_eval.data.shapes_video import SHARED_JITTER, SyntheticVideo, make_videos
from mec_eval.utils import UserError

MISS_RATE = 0.1         # an object is left out of a frame's detections with this probability
FALSE_POSITIVE_RATE = 0.15  # a frame gets one spurious detection with this probability
BOX_JITTER = 0.05       # std of box edge noise, as a fraction of the box size
KEYPOINT_JITTER = 1.5   # std of keypoint noise, pixels
MOTS_CLASS = 2          # MOTS20 pedestrian
DONE = ".complete"      # marker file of a finished folder (written last, before the rename)


@dataclass(frozen=True)
class VideoSpec:
    """Which synthetic videos: their number, length, size (height, width), objects per video, seed, the
    miss probability of an object overlapping another (``crossing_miss``, on top of MISS_RATE), and the
    nuisances of :func:`mec_eval.data.shapes_video.make_video` (``palette``, ``distractors``, ``palette_jitter``)."""
    n_videos: int = 3
    n_frames: int = 24
    size: tuple = (96, 128)
    n_objects: int = 3
    seed: int = 0
    crossing_miss: float = 0.0
    palette: str = "distinct"
    distractors: int = 0
    palette_jitter: int = SHARED_JITTER

    def videos(self) -> list[SyntheticVideo]:
        if not 0.0 <= self.crossing_miss <= 1.0:
            raise UserError(f"shapes-video: crossing_miss must be a probability in [0, 1] (got {self.crossing_miss!r})")
        return make_videos(self.n_videos, self.seed, n_frames=self.n_frames, size=tuple(self.size),
                           n_objects=self.n_objects, palette=self.palette, distractors=self.distractors,
                           palette_jitter=self.palette_jitter)


def _atomic_folder(root, spec: VideoSpec, write) -> Path:
    """``write(tmp)`` into a temp sibling of ``root`` and rename; an existing complete ``root`` is kept."""
    root = Path(root)
    if (root / DONE).is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise UserError(f"{root} exists but is not a complete synthetic set (no {DONE}); "
                        "remove it or pick another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        write(tmp, spec.videos())
        (tmp / DONE).write_text(json.dumps(spec.__dict__, default=list) + "\n")
        if root.exists():
            root.rmdir()
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _save_frames(folder: Path, video: SyntheticVideo, first: int, ext: str) -> None:
    folder.mkdir(parents=True)
    for t, frame in enumerate(video.frames):
        Image.fromarray(frame).save(folder / f"{t + first:06d}{ext}", quality=95)


def _seqinfo(seq_dir: Path, video: SyntheticVideo) -> None:
    h, w = video.size
    (seq_dir / "seqinfo.ini").write_text(
        f"[Sequence]\nname={video.name}\nimDir=img1\nframeRate=30\nseqLength={len(video.frames)}\n"
        f"imWidth={w}\nimHeight={h}\nimExt=.jpg\n")


def _jitter_box(rng, box, h: int, w: int):
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    noise = rng.normal(0, BOX_JITTER, 4) * [bw, bh, bw, bh]
    x1, y1, x2, y2 = np.clip([x1 + noise[0], y1 + noise[1], x2 + noise[2], y2 + noise[3]], 0, [w, h, w, h])
    return (x1, y1, max(x2, x1 + 2), max(y2, y1 + 2))


def _random_box(rng, h: int, w: int):
    bw, bh = rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h
    x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return (x1, y1, x1 + bw, y1 + bh)


def _crossing(video: SyntheticVideo, t: int) -> set:
    """Ids of the objects whose visible box overlaps another object's in frame t."""
    seen = [(track.id, np.asarray(track.frames[t].box)) for track in video.tracks if track.frames[t] is not None]
    out = set()
    for i, (a_id, a) in enumerate(seen):
        for b_id, b in seen[i + 1:]:
            if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                out |= {a_id, b_id}
    return out


def _observations(rng, video: SyntheticVideo, t: int, crossing_miss: float = 0.0):
    """(track id or 0 for a false positive, TrackFrame or None, score) given to the tracker in frame t."""
    out = []
    crossing = _crossing(video, t) if crossing_miss > 0 else set()
    for track in video.tracks:
        entry = track.frames[t]
        miss = MISS_RATE + (1 - MISS_RATE) * crossing_miss * (track.id in crossing)
        if entry is not None and rng.random() >= miss:
            out.append((track.id, entry, float(rng.uniform(0.6, 1.0))))
    if rng.random() < FALSE_POSITIVE_RATE:
        out.append((0, None, float(rng.uniform(0.3, 0.7))))
    return out


def _row(frame: int, tid: int, box, conf: float, cls: int, vis: float) -> str:
    x1, y1, x2, y2 = box
    return f"{frame},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{conf:.4f},{cls},{vis:.4f}"


def write_shapes_mot(root, spec: VideoSpec = VideoSpec()) -> Path:
    """``root/train/<seq>/{img1, seqinfo.ini, gt/gt.txt, det/det.txt}`` as MOT16 (class 1, visibility)."""
    def write(tmp: Path, videos):
        for v_index, video in enumerate(videos):
            rng = np.random.default_rng([spec.seed, v_index, 1])
            seq = tmp / "train" / video.name
            _save_frames(seq / "img1", video, 1, ".jpg")
            _seqinfo(seq, video)
            h, w = video.size
            gt, det = [], []
            for t in range(len(video.frames)):
                gt += [_row(t + 1, tr.id, tr.frames[t].box, 1, 1, tr.frames[t].visibility)
                       for tr in video.tracks if tr.frames[t] is not None]
                for tid, entry, score in _observations(rng, video, t, spec.crossing_miss):
                    box = _jitter_box(rng, entry.box, h, w) if entry is not None else _random_box(rng, h, w)
                    det.append(_row(t + 1, -1, box, score, -1, -1))
            for name, rows in (("gt/gt.txt", gt), ("det/det.txt", det)):
                (seq / name).parent.mkdir(exist_ok=True)
                (seq / name).write_text("".join(r + "\n" for r in rows))
    return _atomic_folder(root, spec, write)


def _rle(mask: np.ndarray) -> str:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def _noisy_mask(rng, mask: np.ndarray) -> np.ndarray:
    """The mask shifted by up to 2 pixels each way (a given mask is never exact)."""
    dy, dx = rng.integers(-2, 3, 2)
    return np.roll(np.roll(mask, int(dy), axis=0), int(dx), axis=1)


def write_shapes_mots(root, spec: VideoSpec = VideoSpec()) -> Path:
    """``root/train/<seq>/{img1, seqinfo.ini, gt/gt.txt, det/det.txt}`` in the MOTS txt format (class 2)."""
    def write(tmp: Path, videos):
        for v_index, video in enumerate(videos):
            rng = np.random.default_rng([spec.seed, v_index, 2])
            seq = tmp / "train" / video.name
            _save_frames(seq / "img1", video, 1, ".jpg")
            _seqinfo(seq, video)
            h, w = video.size
            gt, det = [], []
            for t in range(len(video.frames)):
                gt += [f"{t + 1} {MOTS_CLASS * 1000 + tr.id} {MOTS_CLASS} {h} {w} {_rle(tr.frames[t].mask)}"
                       for tr in video.tracks if tr.frames[t] is not None]
                for k, (tid, entry, _score) in enumerate(_observations(rng, video, t, spec.crossing_miss)):
                    if entry is None:
                        mask = np.zeros((h, w), dtype=bool)
                        x1, y1, x2, y2 = (int(v) for v in _random_box(rng, h, w))
                        mask[y1:y2, x1:x2] = True
                    else:
                        mask = _noisy_mask(rng, entry.mask)
                    det.append(f"{t + 1} {k + 1} {MOTS_CLASS} {h} {w} {_rle(mask)}")
            for name, rows in (("gt/gt.txt", gt), ("det/det.txt", det)):
                (seq / name).parent.mkdir(exist_ok=True)
                (seq / name).write_text("".join(r + "\n" for r in rows))
    return _atomic_folder(root, spec, write)


def _joints(keypoints: np.ndarray) -> np.ndarray:
    """The shape's outline vertices as the first PoseTrack joints; the other joints of the 17 are absent."""
    out = np.zeros((17, 3))
    out[:len(keypoints)] = keypoints[:17]
    return out


def _head_box(box) -> list:
    """A synthetic 'head': the top-left third of the object box (only its size matters, for PCKh)."""
    x1, y1, x2, y2 = box
    return [x1, y1, (x2 - x1) / 3, (y2 - y1) / 3]


def write_shapes_posetrack(root, spec: VideoSpec = VideoSpec()) -> Path:
    """``root/images/val/<seq>/``, ``root/annotations/val/<seq>.json`` and given poses ``root/poses/<seq>.json``."""
    def write(tmp: Path, videos):
        for folder in ("annotations/val", "poses"):
            (tmp / folder).mkdir(parents=True)
        for v_index, video in enumerate(videos):
            rng = np.random.default_rng([spec.seed, v_index, 3])
            _save_frames(tmp / "images" / "val" / video.name, video, 0, ".jpg")
            images, gt, given = [], [], []
            for t in range(len(video.frames)):
                image_id = 10000 * (v_index + 1) + t
                images.append({"id": image_id, "file_name": f"images/val/{video.name}/{t:06d}.jpg", "frame_id": t,
                               "vid_id": str(v_index), "is_labeled": True, "nframes": len(video.frames)})
                for tr in video.tracks:
                    if tr.frames[t] is not None:
                        gt.append({"id": len(gt) + 1, "image_id": image_id, "track_id": tr.id, "category_id": 1,
                                   "keypoints": _joints(tr.frames[t].keypoints).ravel().round(2).tolist(),
                                   "bbox_head": np.round(_head_box(tr.frames[t].box), 2).tolist()})
                for tid, entry, score in _observations(rng, video, t, spec.crossing_miss):
                    if entry is None:
                        x1, y1, x2, y2 = _random_box(rng, *video.size)
                        kp = np.column_stack([rng.uniform(x1, x2, 12), rng.uniform(y1, y2, 12), np.full(12, 0.5)])
                    else:
                        kp = entry.keypoints.copy()
                        kp[:, :2] += rng.normal(0, KEYPOINT_JITTER, (len(kp), 2))
                        kp[:, 2] = np.where(kp[:, 2] > 0, rng.uniform(0.5, 1.0, len(kp)), 0.0)
                    given.append({"id": len(given) + 1, "image_id": image_id, "category_id": 1, "score": score,
                                  "keypoints": _joints(kp).ravel().round(2).tolist()})
            categories = [{"id": 1, "name": "person", "keypoints": [f"joint_{j}" for j in range(17)]}]
            for folder, anns in (("annotations/val", gt), ("poses", given)):
                (tmp / folder / f"{video.name}.json").write_text(json.dumps(
                    {"images": images, "annotations": anns, "categories": categories}))
    return _atomic_folder(root, spec, write)
