"""UniTrack MOTS on MOTS20 (given masks): masked-feature embeddings, the shared association, mask IoU, TrackEval."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mec_eval.data import shapes_tracking
from mec_eval.data.mot import VideoSequences, decode_masks, mots_gt_file
from mec_eval.metrics.mot import evaluate_mots
from mec_eval.tasks.association import Detections
from mec_eval.tasks.mot import TrackingTask, mask_embeddings
from mec_eval.tasks.tracking_configs import TrackingConfig
from mec_eval.utils import UserError, atomic_write_text


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """[N, 4] XYXY boxes (exclusive right / bottom) of [N, H, W] masks; an empty mask gives a zero box."""
    boxes = np.zeros((len(masks), 4))
    for i, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows):
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def non_overlapping(masks: list, order: list) -> list:
    """The masks with each pixel kept by the first mask in ``order`` that has it (MOTS forbids overlaps)."""
    taken, out = None, {}
    for i in order:
        mask = masks[i] if taken is None else masks[i] & ~taken
        taken = masks[i].copy() if taken is None else taken | masks[i]
        out[i] = mask
    return [out[i] for i in range(len(masks))]


class MOTSTask(TrackingTask):
    name = "mots"
    Config = TrackingConfig

    def sequences(self, cfg: TrackingConfig):
        if cfg.data.name == "shapes-video":
            root = shapes_tracking.write_shapes_mots(self.synthetic_root(cfg), self.video_spec(cfg))
        elif cfg.data.name == "mots20":
            root = cfg.data.root
        else:
            raise UserError(f"task mots reads mots20 or shapes-video, not {cfg.data.name}")
        return VideoSequences(root, "mots", cfg.data.detections, cfg.data.sequences or None)

    def detections(self, feat, geometry, annotation, cfg, stride):
        scale, px, py, h, w = geometry
        rows = annotation["det"]
        masks = decode_masks(rows, h, w)
        boxes = masks_to_boxes(masks)
        # The features cover the letterboxed frame: cut out the part the image fills, at its size.
        fh, fw = round(h * scale / stride), round(w * scale / stride)
        y0, x0 = round(py / stride), round(px / stride)
        region = feat[:, y0:y0 + max(fh, 1), x0:x0 + max(fw, 1)]
        embeds = mask_embeddings(region, masks, cfg.data.max_cells)
        return Detections(boxes, np.ones(len(rows)), embeds, masks if len(rows) else None), rows

    def write(self, path: Path, seq, outputs: list, cfg: TrackingConfig) -> None:
        from pycocotools import mask as mask_utils

        lines = []
        for frame, matches, rows in outputs:
            masks = decode_masks([rows[j] for _, j in matches], seq.info.height, seq.info.width)
            for (track_id, _j), mask in zip(matches, non_overlapping(list(masks), list(range(len(masks))))):
                if mask.any():
                    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")
                    lines.append(f"{frame} {2000 + track_id} 2 {seq.info.height} {seq.info.width} {rle}\n")
        atomic_write_text(path, "".join(lines))

    def score(self, data, tracks_dir: Path, cfg: TrackingConfig) -> dict:
        """TrackEval on ``<seq>/gt/gt.txt`` or, where the sequences have none, on the release's
        ``instances_txt/<seq>.txt`` (the folder :func:`mots_gt_file` found it in)."""
        gt = mots_gt_file(data.dirs[0])
        base = data.dirs[0].parent if gt.parent.name == "gt" else gt.parent.parent
        return evaluate_mots(base, tracks_dir, sequences=[d.name for d in data.dirs])
