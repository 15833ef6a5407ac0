"""Score detections already on disk (COCO results format) against VOC07 test or COCO val2017 ground truth.

The file is a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` (plus an
RLE ``"segmentation"`` for COCO masks), boxes in 0-based pixels as detectron2 and COCO write them.
For VOC, ``image_id`` is the ImageSets name ("000005") and ``category_id`` the class name ("dog").
Every image of the ground-truth set is evaluated (an image without detections scores misses).
Anything malformed in the file is a one-line :class:`~mec_eval.utils.UserError` naming the entry.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from mec_eval.data.detection import VOC_CLASSES, COCODetection, VOCDetection, read_class_list, voc_root
from mec_eval.data.shapes_detection import MARKER as SHAPES_MARKER
from mec_eval.metrics.coco import COCOEvaluator
from mec_eval.metrics.voc import VOCEvaluator
from mec_eval.utils import UserError

TASKS = ("voc07", "voc0712", "coco")


def _read_predictions(pred_path) -> list[dict]:
    path = Path(pred_path)
    if not path.is_file():
        raise UserError(f"--pred {path}: no such file (a JSON list of detections in the COCO results format)")
    try:
        content = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"--pred {path} is not a readable JSON file ({' '.join(str(err).split())[:120]})") from None
    if not isinstance(content, list):
        raise UserError(f"--pred {path} holds a JSON {type(content).__name__}; expected a list of detections "
                        "{image_id, category_id, bbox, score}")
    return content


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_entry(k: int, entry, path, image_ok, category_ok, masks: bool) -> None:
    """One detection's fields, or a UserError naming entry ``k`` of ``path``."""
    where = f"--pred {path}: detection {k}"
    if not isinstance(entry, dict):
        raise UserError(f"{where} is a {type(entry).__name__}, not an object {{image_id, category_id, bbox, score}}")
    missing = [f for f in ("image_id", "category_id", "bbox", "score") if f not in entry]
    if missing:
        raise UserError(f"{where} has no {', '.join(missing)}")
    if not image_ok(entry["image_id"]):
        raise UserError(f"{where} names image {str(entry['image_id'])[:40]!r}, which the ground truth does not hold")
    if not category_ok(entry["category_id"]):
        raise UserError(f"{where} names category {str(entry['category_id'])[:40]!r}, which the ground truth does "
                        "not hold")
    bbox = entry["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)) or min(bbox[2:]) < 0:
        raise UserError(f"{where} has bbox {str(bbox)[:60]}; expected [x, y, width, height] of finite numbers, "
                        "no negative size")
    if not _number(entry["score"]):
        raise UserError(f"{where} has score {str(entry['score'])[:40]}; expected a finite number")
    if masks:
        seg = entry.get("segmentation")
        if not (isinstance(seg, dict) and isinstance(seg.get("counts"), str) and isinstance(seg.get("size"), list)):
            raise UserError(f"{where} has no RLE segmentation {{size, counts}} while other detections do "
                            "(masks are scored only when every detection has one)")


def _score_voc(gt_root, predictions: list, path) -> tuple[dict, dict, str]:
    year_dir = voc_root(gt_root) / "VOC2007"
    classes = read_class_list(year_dir) if year_dir.is_dir() else None
    dataset = VOCDetection(gt_root, (("2007", "test"),), classes=classes or VOC_CLASSES, check_images=False)
    index = {name: label for label, name in enumerate(dataset.classes, start=1)}
    ids = set(dataset.ids)
    per_image = defaultdict(list)
    for k, entry in enumerate(predictions):
        _check_entry(k, entry, path, lambda i: isinstance(i, str) and i in ids,
                     lambda c: isinstance(c, str) and c in index, masks=False)
        per_image[entry["image_id"]].append(entry)
    evaluator = VOCEvaluator(dataset.classes, use_07_metric=True)
    for i in range(len(dataset)):
        target = dataset.annotations(i)
        entries = per_image[target["image_id"]]
        xywh = np.asarray([e["bbox"] for e in entries], dtype=np.float64).reshape(-1, 4)
        output = {"boxes": torch.from_numpy(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)),
                  "scores": torch.tensor([float(e["score"]) for e in entries], dtype=torch.float64),
                  "labels": torch.tensor([index[e["category_id"]] for e in entries], dtype=torch.int64)}
        evaluator.process([target["image_id"]], [target], [output])
    metrics = evaluator.evaluate()
    name = "shapes-detection" if classes is not None else "pascal-voc"
    return metrics, {"per_class_AP50": evaluator.per_class(), "detections": len(predictions),
                     "images": len(dataset)}, name


def _score_coco(gt_root, predictions: list, path) -> tuple[dict, dict, str]:
    dataset = COCODetection(gt_root, "val", masks=False, drop_empty=False, check_images=False)
    images, cats = dataset.coco.imgs, dataset.coco.cats
    masks = any(isinstance(e, dict) and "segmentation" in e for e in predictions)
    for k, entry in enumerate(predictions):
        _check_entry(k, entry, path, lambda i: isinstance(i, int) and not isinstance(i, bool) and i in images,
                     lambda c: isinstance(c, int) and not isinstance(c, bool) and c in cats, masks)
        if masks and entry["segmentation"]["size"] != [images[entry["image_id"]]["height"],
                                                        images[entry["image_id"]]["width"]]:
            raise UserError(f"--pred {path}: detection {k} has a segmentation of size "
                            f"{str(entry['segmentation']['size'])[:30]}, not its image's [height, width]")
    if masks and not all("segmentation" in a for a in dataset.coco.dataset["annotations"]):
        raise UserError(f"--pred {path} has masks but the ground truth at {gt_root} has no segmentation to score "
                        "them against")
    evaluator = COCOEvaluator(dataset.coco, dataset.label_to_category_id, ("bbox", "segm") if masks else ("bbox",))
    evaluator.process_results(sorted(images), predictions)
    metrics = evaluator.evaluate()
    name = "shapes-detection" if (Path(gt_root) / SHAPES_MARKER).is_file() else "coco2017"
    return metrics, {"per_class_AP": evaluator.per_class(), "detections": len(predictions),
                     "images": len(images)}, name


def score_detections(task: str, gt_root, pred_path) -> tuple[dict[str, float], dict, str]:
    """(metrics, extra for result.json, dataset name) of the detections in ``pred_path``.

    ``task`` "voc07" / "voc0712" score against VOC2007 test under ``gt_root`` (a VOCdevkit folder;
    11-point AP, as both are tested in MEC Table 3), "coco" against ``gt_root``'s val2017 (bbox, and
    segm when the detections carry masks). A synthetic shapes-detection set in either layout is
    recognised and named as such.
    """
    if task not in TASKS:
        raise UserError(f"score: task {task!r} has no detection scoring (choose {', '.join(TASKS)})")
    predictions = _read_predictions(pred_path)
    if task == "coco":
        return _score_coco(gt_root, predictions, pred_path)
    return _score_voc(gt_root, predictions, pred_path)
