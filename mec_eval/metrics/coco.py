"""COCO box and mask AP with pycocotools' COCOeval, fed as detectron2's ``COCOEvaluator`` feeds it.

Outputs are converted as in detectron2 ``evaluation/coco_evaluation.py`` (``instances_to_coco_json``):
XYXY boxes become XYWH, contiguous labels go back to COCO category ids, mask probabilities above 0.5
become RLE (``mask.encode`` of a Fortran array, counts decoded to str), and segm results carry no
``bbox`` (COCOeval derives it from the mask). COCOeval is restricted to the processed images
(``params.imgIds``) and its ``stats[0:6]`` (AP, AP50, AP75, APs, APm, APl) are reported in percent,
an area range without ground truth (stats -1) as NaN, as detectron2 does. Differently from
detectron2, which reports NaN, no detection at all scores 0.0: every ground-truth object is missed.
``fast=True`` runs faster-coco-eval's C++ ``COCOeval_faster`` on the same results (its stats equal
pycocotools' on the tests' detections; pycocotools stays the reference).
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch

from mec_eval.metrics.evaluator import DatasetEvaluator
from mec_eval.metrics.records import decode_records, encode_records

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _numpy(x, dtype) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(dtype, copy=False)


def _mask_rles(masks, n: int, size: tuple[int, int], image_id) -> list[dict]:
    """Binary RLEs (counts as str) of ``n`` mask probabilities [N, 1, H, W] or [N, H, W] thresholded at 0.5."""
    from pycocotools import mask as mask_util

    masks = _numpy(masks, np.float32)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.shape != (n, *size):
        raise ValueError(f"image {image_id}: masks have shape {masks.shape}, expected [{n}, (1,) {size[0]}, {size[1]}] "
                         "(probabilities pasted at the image's size)")
    binary = np.asfortranarray((masks > 0.5).astype(np.uint8).transpose(1, 2, 0))
    rles = mask_util.encode(binary) if n else []
    return [{"size": rle["size"], "counts": rle["counts"].decode("utf-8")} for rle in rles]


def coco_results(image_ids: Sequence[int], outputs: Sequence[dict], label_to_category_id: dict[int, int],
                 iou_types: Sequence[str] = IOU_TYPES, image_sizes: dict | None = None) -> list[dict]:
    """The COCO results list of per-image ``outputs`` (boxes XYXY, scores, labels 1..K, optional masks).

    Each detection is ``{image_id, category_id, bbox: [x, y, w, h], score}`` plus ``segmentation``
    (an RLE) when "segm" is among ``iou_types``; ``image_sizes`` maps an image id to its (H, W), needed
    to check the masks (without it their own size is taken).
    """
    results = []
    for image_id, output in zip(image_ids, outputs, strict=True):
        boxes = _numpy(output["boxes"], np.float64).reshape(-1, 4)
        scores, labels = _numpy(output["scores"], np.float64), _numpy(output["labels"], np.int64)
        n = len(boxes)
        if scores.shape != (n,) or labels.shape != (n,):
            raise ValueError(f"image {image_id}: {n} boxes but scores {scores.shape} and labels {labels.shape}")
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise ValueError(f"image {image_id}: non-finite boxes or scores in the model's outputs")
        unknown = sorted(set(labels.tolist()) - set(label_to_category_id))
        if unknown:
            raise ValueError(f"image {image_id}: labels {unknown} are not among 1..{len(label_to_category_id)}")
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        segms = None
        if "segm" in iou_types and n:
            if output.get("masks") is None:
                raise ValueError(f"image {image_id}: segm evaluation needs 'masks' in the outputs")
            size = (image_sizes or {}).get(image_id) or tuple(output["masks"].shape[-2:])
            segms = _mask_rles(output["masks"], n, tuple(size), image_id)
        for k, (bbox, score, label) in enumerate(zip(xywh.tolist(), scores.tolist(), labels.tolist())):
            result = {"image_id": image_id, "category_id": label_to_category_id[label], "bbox": bbox, "score": score}
            if segms is not None:
                result["segmentation"] = segms[k]
            results.append(result)
    return results


def _quiet(fn):
    """Run ``fn`` with COCOeval's progress prints swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


class COCOEvaluator(DatasetEvaluator):
    """bbox_* / segm_* AP (percent) of detections against the COCO ground truth ``coco_gt`` (a pycocotools COCO).

    ``process(image_ids, outputs)`` takes model outputs; ``process_results(image_ids, results)``
    takes COCO results already in the file format (results of other images are an error). Both may
    be mixed; ``evaluate()`` gathers every process's images (the base class's one gather).
    """

    def __init__(self, coco_gt, label_to_category_id: dict[int, int], iou_types: Sequence[str] = IOU_TYPES,
                 fast: bool = False):
        unknown = [t for t in iou_types if t not in IOU_TYPES]
        if unknown or not iou_types:
            raise ValueError(f"iou_types must be among {IOU_TYPES}, got {tuple(iou_types)}")
        self.coco_gt, self.fast = coco_gt, fast
        self.label_to_category_id = {int(k): int(v) for k, v in label_to_category_id.items()}
        self.iou_types = tuple(iou_types)
        self._per_class: dict[str, dict[str, float]] | None = None
        super().__init__()

    def process(self, image_ids: Sequence[int], outputs: Sequence[dict]) -> None:
        """Keep the detections of one batch: ``outputs[i]`` belongs to image ``image_ids[i]``."""
        sizes = {i: (self.coco_gt.imgs[i]["height"], self.coco_gt.imgs[i]["width"])
                 for i in image_ids if i in self.coco_gt.imgs}
        self.process_results(image_ids, coco_results(image_ids, outputs, self.label_to_category_id,
                                                     self.iou_types, sizes))

    def process_results(self, image_ids: Sequence[int], results: Sequence[dict]) -> None:
        """Keep COCO-format ``results`` of the images ``image_ids`` (an image may have none)."""
        missing = [i for i in image_ids if i not in self.coco_gt.imgs]
        if missing:
            raise ValueError(f"image ids {missing[:5]} are not in the ground truth")
        by_image: dict = {i: [] for i in image_ids}
        for result in results:
            if result["image_id"] not in by_image:
                raise ValueError(f"a result of image {result['image_id']!r}, which is not among this batch's images")
            by_image[result["image_id"]].append(result)
        DatasetEvaluator.process(self, [{"image_id": i, "results": r} for i, r in by_image.items()], None)

    def _accumulate(self, records, _unused) -> tuple[torch.Tensor]:
        return (encode_records(records),)

    def _compute(self, column: torch.Tensor) -> dict[str, float]:
        records = decode_records(column)
        image_ids = [r["image_id"] for r in records]
        if len(set(image_ids)) != len(image_ids):
            raise ValueError("an image was processed twice (on one process or on two); each image once")
        results = [result for r in records for result in r["results"]]
        metrics: dict[str, float] = {}
        self._per_class = {}
        for iou_type in self.iou_types:
            # Copies: loadRes writes area / id (and for boxes a polygon) into the records it gets.
            typed = [{k: v for k, v in r.items() if iou_type == "bbox" or k != "bbox"} for r in results]
            stats, per_class = self._evaluate_type(iou_type, typed, sorted(image_ids))
            metrics.update({f"{iou_type}_{name}": value for name, value in zip(STAT_NAMES, stats)})
            self._per_class[iou_type] = per_class
        return metrics

    def _evaluate_type(self, iou_type: str, results: list[dict], image_ids: list[int]):
        """(six stats in percent, {class name: AP}) of one iou type; no results score 0.0 throughout."""
        names = {c: self.coco_gt.cats[c].get("name", str(c)) for c in sorted(self.coco_gt.cats)}
        if not results:
            return [0.0] * len(STAT_NAMES), {name: 0.0 for name in names.values()}
        if iou_type == "segm" and any("segmentation" not in r for r in results):
            raise ValueError("segm evaluation needs a segmentation in every result")
        coco_eval = _quiet(lambda: self._cocoeval(iou_type, results, image_ids))
        stats = [float(s * 100) if s >= 0 else float("nan") for s in coco_eval.stats[:len(STAT_NAMES)]]
        # precision [IoU, recall, class, area, max dets]: area "all", 100 detections, as detectron2's table.
        precision = coco_eval.eval["precision"]
        per_class = {}
        for k, cat_id in enumerate(coco_eval.params.catIds):
            values = precision[:, :, k, 0, -1]
            values = values[values > -1]
            per_class[names[cat_id]] = float(values.mean() * 100) if values.size else float("nan")
        return stats, per_class

    def _cocoeval(self, iou_type: str, results: list[dict], image_ids: list[int]):
        if self.fast:
            from faster_coco_eval import COCO as FastCOCO
            from faster_coco_eval import COCOeval_faster

            gt = FastCOCO(self.coco_gt.dataset)
            coco_eval = COCOeval_faster(gt, gt.loadRes(results), iou_type)
        else:
            from pycocotools.cocoeval import COCOeval

            coco_eval = COCOeval(self.coco_gt, self.coco_gt.loadRes(results), iou_type)
        coco_eval.params.imgIds = image_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        return coco_eval

    def per_class(self) -> dict[str, dict[str, float]]:
        """{iou type: {class name: AP in percent}} of the last ``evaluate()`` (for result.json's extra)."""
        if self._per_class is None:
            raise ValueError("per_class() is known only after evaluate()")
        return self._per_class
