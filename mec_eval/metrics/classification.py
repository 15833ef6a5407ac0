"""Classification metrics in percent: top-k, mean per-class accuracy, VOC07 11-point mAP, and evaluators.

The evaluators implement :class:`mec_eval.metrics.evaluator.DatasetEvaluator` (``reset`` / ``process``
/ ``evaluate``, after detectron2) through its ``_accumulate`` / ``_compute`` hooks, keeping CPU
float64 / int64 columns, so a metric depends neither on the batching nor on how the rows were split
across processes; the base class does the gathering across processes, in one place.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, precision_recall_curve

from mec_eval.metrics.evaluator import DatasetEvaluator


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, k: int = 1) -> float:
    """Percentage of rows whose true class is among the ``k`` highest scores."""
    if logits.ndim != 2 or target.ndim != 1 or len(logits) != len(target):
        raise ValueError(f"expected logits [N, C] and target [N], got {tuple(logits.shape)} and {tuple(target.shape)}")
    if len(target) == 0:
        raise ValueError("no samples")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == target[:, None]).any(dim=1).float().mean() * 100.0)


def _numpy(x) -> np.ndarray:
    """A numpy array of a torch tensor (any device or dtype) or array-like."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16 (autocast outputs); float64 holds every float dtype exactly.
        return (x.double() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def mean_per_class_accuracy(pred, target) -> float:
    """Mean over the classes present in ``target`` of per-class recall, in percent.

    ssl-transfer's "mean per-class accuracy" (``linear.py``: confusion-matrix diagonal over row
    sums, averaged), used for Aircraft, Pets, Caltech-101 and Flowers in MEC Table 8; computed by
    sklearn's ``balanced_accuracy_score``. Classes that only occur in ``pred`` are not averaged.

    Args:
        pred: predicted class ids [N] (take ``argmax`` of scores first).
        target: true class ids [N].
    """
    pred, target = _numpy(pred), _numpy(target)
    if pred.ndim != 1 or target.ndim != 1 or len(pred) != len(target):
        raise ValueError(f"expected pred [N] and target [N] class ids, got {pred.shape} and {target.shape}")
    if len(target) == 0:
        raise ValueError("no samples")
    with warnings.catch_warnings():
        # sklearn warns when a predicted class never occurs in target (such classes are left out, as
        # intended) and when a single class occurs at all (its recall is then the answer).
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        return float(balanced_accuracy_score(target.astype(np.int64), pred.astype(np.int64)) * 100.0)


def voc07_ap(scores, labels) -> float:
    """PASCAL VOC 2007 11-point interpolated average precision of one class, in percent.

    Mean over recall thresholds t = 0, 0.1, ..., 1 of the highest precision at recall >= t (0 when
    no point reaches t), on sklearn's ``precision_recall_curve``, as ssl-transfer's ``voc_eval_cls``
    (MEC Table 8, VOC2007 classification). Two details follow that code so numbers agree exactly:
    the curve ends in the point (recall 0, precision 1), so the t = 0 term is always 1; and the
    thresholds are ``np.linspace(0, 1, 11)``, whose 0.3, 0.6 and 0.7 are a hair above those values,
    so a recall of exactly 3/10 does not reach t = 0.3.

    Args:
        scores: [N] scores, higher = more confident the image shows the class.
        labels: [N] in {1, 0, -1}: positive, negative, difficult. Difficult rows are dropped first.
            (Not the VOC ``ImageSets`` file encoding, where 0 is difficult and -1 negative.)
    """
    scores, labels = _numpy(scores).astype(np.float64), _numpy(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"expected scores [N] and labels [N], got {scores.shape} and {labels.shape}")
    odd = sorted(set(np.unique(labels).tolist()) - {1, 0, -1})
    if odd:
        raise ValueError(f"labels must be 1, 0 or -1 (difficult), got {odd}")
    keep = labels != -1
    scores, positive = scores[keep], labels[keep] == 1
    if not positive.any():
        raise ValueError("no positive example (after dropping difficult ones): AP is undefined")
    precision, recall, _ = precision_recall_curve(positive, scores)
    points = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.linspace(0, 1, 11)]
    return float(np.mean(points) * 100.0)


def voc07_map(scores, targets) -> float:
    """Mean of :func:`voc07_ap` over the classes (columns), in percent.

    A class with no positive example after dropping the difficult ones has no AP and is left out
    of the mean (VOC2007 test has positives for all 20 classes, so this only affects small
    subsets); if no class has a positive, ``ValueError``.

    Args:
        scores: [N, C] per-class scores (e.g. one binary classifier's decision function per class).
        targets: [N, C] in {1, 0, -1} (positive, negative, difficult).
    """
    scores, targets = _numpy(scores), _numpy(targets)
    if scores.ndim != 2 or targets.shape != scores.shape:
        raise ValueError(f"expected scores [N, C] and targets [N, C], got {scores.shape} and {targets.shape}")
    aps = [voc07_ap(scores[:, c], targets[:, c]) for c in range(scores.shape[1]) if (targets[:, c] == 1).any()]
    if not aps:
        raise ValueError("no class has a positive example: mAP is undefined")
    return float(np.mean(aps))


def _cpu(x, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(x).detach().to(device="cpu", dtype=dtype)


class ClassificationEvaluator(DatasetEvaluator):
    """Top-1 (and top-5) accuracy in percent of scores [B, C] against class ids [B], over all batches."""

    def __init__(self, topk: tuple[int, ...] = (1, 5)):
        self.topk = topk
        super().__init__()

    def _accumulate(self, scores, targets) -> tuple[torch.Tensor, torch.Tensor]:
        return _cpu(scores, torch.float64), _cpu(targets, torch.int64)

    def _compute(self, scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {f"top{k}": topk_accuracy(scores, targets, k) for k in self.topk if k <= scores.shape[1]}


class MeanPerClassEvaluator(DatasetEvaluator):
    """Mean per-class accuracy and top-1 (both percent) of argmax predictions over all batches."""

    def _accumulate(self, scores, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """``scores`` [B, C] logits or probabilities, ``targets`` [B] class ids."""
        scores = torch.as_tensor(scores)
        if scores.ndim != 2:
            raise ValueError(f"expected scores [B, C], got {tuple(scores.shape)}")
        # Only the predicted class matters, so keep the argmax instead of every score.
        return _cpu(scores.argmax(dim=1), torch.int64), _cpu(targets, torch.int64)

    def _compute(self, pred: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {"mean_per_class": mean_per_class_accuracy(pred, targets),
                "top1": float((pred == targets).double().mean() * 100.0)}


class VOC07MapEvaluator(DatasetEvaluator):
    """VOC2007 11-point mAP (percent) of multi-label scores [B, C] against targets [B, C] in {1, 0, -1}."""

    def _accumulate(self, scores, targets) -> tuple[torch.Tensor, torch.Tensor]:
        return _cpu(scores, torch.float64), _cpu(targets, torch.int64)

    def _compute(self, scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {"voc07_map": voc07_map(scores, targets)}


EVALUATORS = {"top1": ClassificationEvaluator, "mean_per_class": MeanPerClassEvaluator,
              "voc07_map": VOC07MapEvaluator}


def evaluator_for(metric: str) -> DatasetEvaluator:
    """A fresh evaluator for a task's metric name: "top1" (top-1/top-5), "mean_per_class", "voc07_map"."""
    if metric not in EVALUATORS:
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(EVALUATORS)}")
    return EVALUATORS[metric]()
