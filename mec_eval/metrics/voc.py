"""PASCAL VOC detection AP as the devkit computes it, and detectron2's ``PascalVOCDetectionEvaluator`` metrics.

Follows ``voc_eval`` / ``voc_ap`` of detectron2 ``evaluation/pascal_voc_evaluation.py`` (a port of
the devkit's ``VOCevaldet.m``): detections of a class in decreasing score order each take the
ground-truth box of highest IoU in their image; above the threshold (strictly) it is a true
positive the first time, a false positive (duplicate) after that, and neither when that box is
``difficult`` (difficult boxes are also left out of the positives). IoU uses the devkit's
inclusive pixels: widths, heights and intersections add 1. Boxes are scored in the devkit's
1-based coordinates: as detectron2 does before writing its result files, 1 is added back to x1
and y1 of both detections and ground truth (the loader subtracted it). AP is 11-point
interpolated for VOC2007 (``use_07_metric``) and the area under the monotone precision envelope
otherwise (VOC2010+). Two differences from detectron2: detections are not rounded to its result
files' 0.1 pixel / 0.001 score, and equal scores keep their input order (a stable sort).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from mec_eval.metrics.evaluator import DatasetEvaluator
from mec_eval.metrics.records import decode_records, encode_records

IOU_THRESHOLDS = tuple(t / 100 for t in range(50, 100, 5))  # 0.50:0.05:0.95, detectron2's VOC "AP"


def voc_ap(recall, precision, use_07_metric: bool) -> float:
    """AP of a precision / recall curve (both in detection order): 11-point (VOC2007) or envelope area."""
    recall, precision = np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
    if use_07_metric:  # the devkit's recall points, arange(0, 1.1, 0.1): 0.30000000000000004 and so on
        points = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.arange(0.0, 1.1, 0.1)]
        return float(np.mean(points))
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope: best precision at this recall or beyond
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _ious(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[D, G] IoU of 1-based inclusive boxes (the devkit's +1 on widths, heights and intersections)."""
    iw = np.minimum(boxes[:, None, 2], gt[None, :, 2]) - np.maximum(boxes[:, None, 0], gt[None, :, 0]) + 1.0
    ih = np.minimum(boxes[:, None, 3], gt[None, :, 3]) - np.maximum(boxes[:, None, 1], gt[None, :, 1]) + 1.0
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area = lambda b: (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    return inter / (area(boxes)[:, None] + area(gt)[None, :] - inter)


def voc_class_aps(detections: Iterable, annotations: dict, class_name: str, iou_thresholds: Sequence[float],
                  use_07_metric: bool) -> list[float]:
    """:func:`voc_class_ap` at several IoU thresholds at once (the IoUs are computed once)."""
    dets = list(detections)
    gt = {}
    for image_id, objects in annotations.items():
        mine = [o for o in objects if o["name"] == class_name]
        gt[image_id] = (np.asarray([o["bbox"] for o in mine], dtype=np.float64).reshape(-1, 4),
                        np.asarray([bool(o["difficult"]) for o in mine], dtype=bool))
    npos = sum(int((~difficult).sum()) for _, difficult in gt.values())
    if npos == 0:
        return [float("nan")] * len(iou_thresholds)
    scores = np.asarray([d[1] for d in dets], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    # +1 true positive, -1 false positive, 0 ignored (matched a difficult box), per threshold.
    outcome = np.zeros((len(iou_thresholds), len(dets)), dtype=np.int8)
    per_image = defaultdict(list)
    for rank, index in enumerate(order):
        per_image[dets[index][0]].append(rank)
    for image_id, ranks in per_image.items():
        if image_id not in gt:
            raise ValueError(f"a detection of image {image_id!r}, which has no annotations")
        gt_boxes, difficult = gt[image_id]
        if not len(gt_boxes):
            outcome[:, ranks] = -1
            continue
        ious = _ious(np.asarray([dets[order[r]][2] for r in ranks], dtype=np.float64).reshape(-1, 4), gt_boxes)
        best, best_iou = ious.argmax(axis=1), ious.max(axis=1)
        for t, threshold in enumerate(iou_thresholds):
            taken = np.zeros(len(gt_boxes), dtype=bool)
            for row, rank in enumerate(ranks):  # in score order: the first match takes the box
                j = best[row]
                if best_iou[row] <= threshold:
                    outcome[t, rank] = -1
                elif not difficult[j]:
                    outcome[t, rank] = -1 if taken[j] else 1
                    taken[j] = True
    aps = []
    for row in outcome:
        tp, fp = np.cumsum(row == 1), np.cumsum(row == -1)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(voc_ap(tp / float(npos), precision, use_07_metric))
    return aps


def voc_class_ap(detections: Iterable, annotations: dict, class_name: str, iou_threshold: float = 0.5,
                 use_07_metric: bool = True) -> float:
    """AP (0..1) of one class, the devkit's way; NaN when the class has no non-difficult object.

    Args:
        detections: ``(image_id, score, (x1, y1, x2, y2))`` of ``class_name``, devkit 1-based pixels.
        annotations: image id -> objects ``{"name", "bbox": (x1, y1, x2, y2) 1-based, "difficult"}``
            (the devkit's ``parse_rec``), for every evaluated image.
    """
    return voc_class_aps(detections, annotations, class_name, (iou_threshold,), use_07_metric)[0]


def _rows(x, dtype, width: int | None = None) -> list:
    array = (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(dtype, copy=False)
    return (array.reshape(-1, width) if width else array.reshape(-1)).tolist()


class VOCEvaluator(DatasetEvaluator):
    """AP (mean over IoU 0.50:0.05:0.95), AP50, AP75 in percent: each the mean over classes of the devkit AP.

    ``process(image_ids, targets, outputs)``: targets as the VOC loader gives them (boxes XYXY with
    0-based x1 / y1, labels from 1, difficult), outputs with boxes XYXY, scores and labels from 1.
    A class without a non-difficult object among the evaluated images is left out of the means
    (its AP is undefined) and of :meth:`per_class`.
    """

    def __init__(self, class_names: Sequence[str], use_07_metric: bool = True):
        self.class_names, self.use_07_metric = tuple(class_names), use_07_metric
        self._per_class: dict[str, float] | None = None
        super().__init__()

    def process(self, image_ids: Sequence[str], targets: Sequence[dict], outputs: Sequence[dict]) -> None:
        """Keep one batch: ground truth and detections of the images ``image_ids``."""
        records = []
        for image_id, target, output in zip(image_ids, targets, outputs, strict=True):
            boxes, scores, labels = (_rows(output["boxes"], np.float64, 4), _rows(output["scores"], np.float64),
                                     _rows(output["labels"], np.int64))
            if not (len(boxes) == len(scores) == len(labels)):
                raise ValueError(f"image {image_id}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
            if not np.isfinite(np.asarray(boxes + [[s] * 4 for s in scores], dtype=np.float64)).all():
                raise ValueError(f"image {image_id}: non-finite boxes or scores in the model's outputs")
            records.append({"image_id": str(image_id), "gt_boxes": _rows(target["boxes"], np.float64, 4),
                            "gt_labels": _rows(target["labels"], np.int64),
                            "gt_difficult": [bool(d) for d in _rows(target["difficult"], bool)],
                            "boxes": boxes, "scores": scores, "labels": labels})
        DatasetEvaluator.process(self, records, None)

    def _accumulate(self, records, _unused) -> tuple[torch.Tensor]:
        return (encode_records(records),)

    def _devkit(self, records: list[dict]) -> tuple[dict, dict]:
        """(annotations as parse_rec gives them, class name -> detections), in 1-based devkit pixels."""
        one_based = lambda b: (b[0] + 1.0, b[1] + 1.0, b[2], b[3])
        name = lambda label: self.class_names[label - 1]
        annotations, detections = {}, defaultdict(list)
        for r in records:
            if r["image_id"] in annotations:
                raise ValueError(f"image {r['image_id']} was processed twice (on one process or on two)")
            bad = [label for label in r["gt_labels"] + r["labels"] if not 1 <= label <= len(self.class_names)]
            if bad:
                raise ValueError(f"image {r['image_id']}: labels {sorted(set(bad))} are outside 1..{len(self.class_names)}")
            annotations[r["image_id"]] = [{"name": name(label), "bbox": one_based(box), "difficult": difficult}
                                          for box, label, difficult in zip(r["gt_boxes"], r["gt_labels"],
                                                                           r["gt_difficult"])]
            for box, score, label in zip(r["boxes"], r["scores"], r["labels"]):
                detections[name(label)].append((r["image_id"], score, one_based(box)))
        return annotations, detections

    def _compute(self, column: torch.Tensor) -> dict[str, float]:
        annotations, detections = self._devkit(decode_records(column))
        table = {name: voc_class_aps(detections[name], annotations, name, IOU_THRESHOLDS, self.use_07_metric)
                 for name in self.class_names}
        table = {name: aps for name, aps in table.items() if not np.isnan(aps[0])}
        if not table:
            raise ValueError("no class has a non-difficult ground-truth object among the evaluated images")
        mean_ap = np.asarray(list(table.values())).mean(axis=0) * 100.0  # per threshold, over classes
        self._per_class = {name: float(aps[0] * 100.0) for name, aps in table.items()}
        return {"AP": float(mean_ap.mean()), "AP50": float(mean_ap[0]), "AP75": float(mean_ap[5])}

    def per_class(self) -> dict[str, float]:
        """{class name: AP50 in percent} of the last ``evaluate()``."""
        if self._per_class is None:
            raise ValueError("per_class() is known only after evaluate()")
        return self._per_class
