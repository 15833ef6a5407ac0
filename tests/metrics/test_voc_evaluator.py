"""VOC devkit AP: a hand-computed case (11-point and area), difficult and duplicates, the +1 pixel IoU,
and an independent brute-force re-computation on random detections through the evaluator."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mec_eval.metrics.voc import IOU_THRESHOLDS, VOCEvaluator, voc_ap, voc_class_ap

# Image "a": g1 (a match for d1, then d2 duplicates it), g2 difficult (d3 lands on it), d4 hits nothing.
ANNOTATIONS = {"a": [{"name": "cat", "bbox": (1, 1, 10, 10), "difficult": False},
                     {"name": "cat", "bbox": (30, 30, 40, 40), "difficult": True},
                     {"name": "dog", "bbox": (50, 50, 60, 60), "difficult": False}],
               "b": [{"name": "cat", "bbox": (5, 5, 20, 20), "difficult": False}]}
DETECTIONS = [("a", 0.9, (1, 1, 10, 10)), ("a", 0.8, (1, 1, 10, 11)), ("a", 0.7, (30, 30, 40, 40)),
              ("a", 0.6, (70, 70, 80, 80)), ("b", 0.5, (5, 5, 20, 20))]


def test_hand_computed_ap_with_difficult_ignored_and_duplicates_false():
    # Order: tp, fp (duplicate), ignored (difficult), fp, tp; npos = 2 (the difficult box does not count).
    # recall .5 .5 .5 .5 1, precision 1 .5 .5 1/3 .5
    assert voc_class_ap(DETECTIONS, ANNOTATIONS, "cat", 0.5, use_07_metric=True) == pytest.approx(8.5 / 11)
    assert voc_class_ap(DETECTIONS, ANNOTATIONS, "cat", 0.5, use_07_metric=False) == pytest.approx(0.75)
    shuffled = [DETECTIONS[i] for i in (3, 0, 4, 2, 1)]  # the input order does not matter
    assert voc_class_ap(shuffled, ANNOTATIONS, "cat", 0.5, True) == pytest.approx(8.5 / 11)
    assert np.isnan(voc_class_ap([], ANNOTATIONS, "bird", 0.5, True))  # no object of the class
    assert voc_class_ap([], ANNOTATIONS, "dog", 0.5, True) == 0.0


def test_voc_ap_closed_forms():
    assert voc_ap([0.5, 1.0], [1.0, 0.5], use_07_metric=True) == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)
    assert voc_ap([0.5, 1.0], [1.0, 0.5], use_07_metric=False) == pytest.approx(0.75)
    # The envelope lifts the dip: precision .5 at recall .5 is replaced by the later 1.0.
    assert voc_ap([0.25, 0.5, 1.0], [1.0, 0.5, 1.0], use_07_metric=False) == pytest.approx(1.0)
    assert voc_ap([], [], use_07_metric=True) == 0.0


def test_inclusive_pixel_iou():
    # (1,1,10,10) vs (6,1,15,10): devkit IoU = 5*10 / (100 + 100 - 50) = 1/3 (without the +1: 36/126 = 0.286).
    annotations = {"x": [{"name": "cat", "bbox": (6, 1, 15, 10), "difficult": False}]}
    detections = [("x", 1.0, (1, 1, 10, 10))]
    assert voc_class_ap(detections, annotations, "cat", 0.3, True) == 1.0
    assert voc_class_ap(detections, annotations, "cat", 0.3334, True) == 0.0
    assert voc_class_ap(detections, annotations, "cat", 1 / 3 - 1e-9, True) == 1.0


def _brute_ap(dets, gts, cls, threshold, use_07):
    """The devkit AP written out differently: plain loops, scalar IoU, explicit envelope."""
    def iou(a, b):
        w = min(a[2], b[2]) - max(a[0], b[0]) + 1
        h = min(a[3], b[3]) - max(a[1], b[1]) + 1
        inter = max(w, 0) * max(h, 0)
        return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)

    mine = sorted((d for d in dets if d[0] == cls), key=lambda d: -d[2])
    npos = sum(1 for boxes in gts.values() for g in boxes if g[0] == cls and not g[2])
    used = set()
    tp = fp = 0
    curve = []
    for _, image, _, box in mine:
        candidates = [(iou(box, g[1]), j) for j, g in enumerate(gts[image]) if g[0] == cls]
        best, j = max(candidates) if candidates else (-1.0, None)
        # max() on ties prefers the larger index; argmax the first: only exact ties differ, none here.
        if best > threshold:
            if gts[image][j][2]:
                curve.append((tp / npos, tp / max(tp + fp, 1e-300)))
                continue
            if (image, j) in used:
                fp += 1
            else:
                tp += 1
                used.add((image, j))
        else:
            fp += 1
        curve.append((tp / npos, tp / max(tp + fp, 1e-300)))
    if use_07:
        return sum(max([p for r, p in curve if r >= t], default=0.0) for t in [i * 0.1 for i in range(11)]) / 11  # the devkit's arange(0, 1.1, 0.1): 3 * 0.1 > 0.3
    levels = sorted({r for r, _ in curve})
    total, previous = 0.0, 0.0
    for r in levels:
        total += (r - previous) * max(p for rr, p in curve if rr >= r)
        previous = r
    return total


def _random_case(seed: int, classes=("a", "b", "c"), images=12):
    rng = np.random.default_rng(seed)
    gts, dets, targets, outputs = {}, [], [], []
    for i in range(images):
        image = f"{i:06d}"
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], axis=1).round()
        labels = rng.integers(1, len(classes) + 1, n)
        difficult = rng.random(n) < 0.2
        gts[image] = [(classes[lab - 1], (b[0] + 1, b[1] + 1, b[2], b[3]), bool(d))
                      for b, lab, d in zip(boxes, labels, difficult)]
        m = int(rng.integers(0, 7))
        pick = rng.integers(0, n, m) if n else np.zeros(m, dtype=int)
        near = boxes[pick] if n else rng.uniform(0, 100, (m, 4))
        noisy = near + rng.normal(0, 3, (m, 4))
        det_boxes = np.concatenate([np.minimum(noisy[:, :2], noisy[:, 2:]), np.maximum(noisy[:, :2], noisy[:, 2:])],
                                   axis=1)
        guess = rng.integers(1, len(classes) + 1, m)
        det_labels = np.where(rng.random(m) < 0.7, labels[pick], guess) if n else guess
        scores = rng.random(m)
        dets += [(classes[lab - 1], image, s, (b[0] + 1, b[1] + 1, b[2], b[3]))
                 for b, lab, s in zip(det_boxes, det_labels, scores)]
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "labels": torch.tensor(labels, dtype=torch.int64), "difficult": torch.tensor(difficult)})
        outputs.append({"boxes": torch.tensor(det_boxes, dtype=torch.float64).reshape(-1, 4),
                        "scores": torch.tensor(scores), "labels": torch.tensor(det_labels, dtype=torch.int64)})
    return classes, gts, dets, list(gts), targets, outputs


@pytest.mark.parametrize("seed, use_07", list(itertools.product([0, 1, 2], [True, False])))
def test_evaluator_equals_brute_force_recomputation(seed, use_07):
    classes, gts, dets, ids, targets, outputs = _random_case(seed)
    evaluator = VOCEvaluator(classes, use_07_metric=use_07)
    for cut in (slice(0, 5), slice(5, 6), slice(6, None)):  # uneven batches
        evaluator.process(ids[cut], targets[cut], outputs[cut])
    metrics = evaluator.evaluate()
    table = {c: [_brute_ap(dets, gts, c, t, use_07) for t in IOU_THRESHOLDS] for c in classes
             if any(g[0] == c and not g[2] for boxes in gts.values() for g in boxes)}
    per_threshold = np.mean(list(table.values()), axis=0) * 100
    assert metrics["AP50"] == pytest.approx(per_threshold[0], abs=1e-9)
    assert metrics["AP75"] == pytest.approx(per_threshold[5], abs=1e-9)
    assert metrics["AP"] == pytest.approx(per_threshold.mean(), abs=1e-9)
    assert evaluator.per_class() == pytest.approx({c: aps[0] * 100 for c, aps in table.items()})
    assert 0 < metrics["AP"] < metrics["AP50"] < 100


def test_perfect_detections_score_100_and_reset_forgets():
    classes, _, _, ids, targets, _ = _random_case(5)
    evaluator = VOCEvaluator(classes)
    perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]
    evaluator.process(ids, targets, perfect)
    assert evaluator.evaluate() == {"AP": 100.0, "AP50": 100.0, "AP75": 100.0}
    evaluator.reset()
    with pytest.raises(ValueError, match="before any process"):
        evaluator.evaluate()
    evaluator.process(ids[:1], targets[:1], perfect[:1])
    evaluator.process(ids[:1], targets[:1], perfect[:1])
    with pytest.raises(ValueError, match="processed twice"):
        evaluator.evaluate()
