"""OTB one-pass evaluation: success-plot AUC over IoU thresholds 0:0.05:1 and precision at 20 px.

Wu, Lim, Yang, "Object Tracking Benchmark", TPAMI 2015 (OTB toolkit ``calcSeqErrRobust.m`` /
``genPerfMat.m``; the same as pysot ``toolkit/evaluation/ope_benchmark.py``): a frame succeeds at
threshold t when IoU > t (strictly), so a perfect tracker scores 20/21 = 95.24 % AUC (IoU 1 is not
> 1). Frames whose ground truth has no area count as IoU -1 and centre error -1 (failures of the
success plot, hits of the precision plot), as in the toolkit. Boxes are x, y, w, h.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mec_eval.data.otb import read_rects
from mec_eval.utils import UserError

THRESHOLDS = np.linspace(0.0, 1.0, 21)  # 0:0.05:1
PRECISION_PIXELS = 20.0


def overlaps(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-frame IoU of x, y, w, h boxes; -1 where the ground truth has no area."""
    gt, pred = np.asarray(gt, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    width = np.minimum(gt[:, 0] + gt[:, 2], pred[:, 0] + pred[:, 2]) - np.maximum(gt[:, 0], pred[:, 0])
    height = np.minimum(gt[:, 1] + gt[:, 3], pred[:, 1] + pred[:, 3]) - np.maximum(gt[:, 1], pred[:, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    union = gt[:, 2] * gt[:, 3] + np.clip(pred[:, 2], 0, None) * np.clip(pred[:, 3], 0, None) - inter
    valid = (gt[:, 2] > 0) & (gt[:, 3] > 0)
    return np.where(valid, inter / np.where(union > 0, union, 1.0), -1.0)


def centre_errors(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-frame distance of box centres in pixels; -1 where the ground truth has no area."""
    gt, pred = np.asarray(gt, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    error = np.linalg.norm((gt[:, :2] + gt[:, 2:] / 2) - (pred[:, :2] + pred[:, 2:] / 2), axis=1)
    return np.where((gt[:, 2] > 0) & (gt[:, 3] > 0), error, -1.0)


def success_curve(iou: np.ndarray) -> np.ndarray:
    """Fraction of frames with IoU > t for each of the 21 thresholds."""
    return (np.asarray(iou)[None, :] > THRESHOLDS[:, None]).mean(axis=1)


def sot_scores(gt: np.ndarray, pred: np.ndarray) -> dict:
    """AUC (%), precision at 20 px (%) and the success curve of one sequence."""
    if len(gt) != len(pred):
        raise UserError(f"{len(pred)} result boxes for {len(gt)} ground-truth frames; one box per frame is needed")
    curve = success_curve(overlaps(gt, pred))
    precision = float((centre_errors(gt, pred) <= PRECISION_PIXELS).mean())
    return {"auc": 100.0 * float(curve.mean()), "precision_20": 100.0 * precision,
            "success_curve": [float(v) for v in curve], "n_frames": len(gt)}


def evaluate_sot(gt_file: str | Path, results_file: str | Path) -> dict:
    """OTB scores of a results rectangle file against a ground-truth one (both x, y, w, h per line)."""
    return sot_scores(read_rects(gt_file), read_rects(results_file))


def mean_scores(per_sequence: list[dict]) -> dict:
    """The OTB overall numbers: success curve averaged over sequences, its AUC, mean precision."""
    curve = np.mean([s["success_curve"] for s in per_sequence], axis=0)
    return {"auc": 100.0 * float(curve.mean()),
            "precision_20": float(np.mean([s["precision_20"] for s in per_sequence]))}
