import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from mec_eval.metrics.classification import (ClassificationEvaluator, MeanPerClassEvaluator, VOC07MapEvaluator,
                                             evaluator_for, mean_per_class_accuracy, topk_accuracy, voc07_ap,
                                             voc07_map)


def _brute_voc07_ap(scores, labels):
    """Independent 11-point AP: cut the ranking at each distinct score, count TP/FP by hand.

    Like sklearn's curve (and ssl-transfer), the curve includes the point (recall 0, precision 1),
    and the thresholds are ssl-transfer's float values ``np.linspace(0, 1, 11)``.
    """
    keep = [i for i, label in enumerate(labels) if label != -1]
    scores = [float(scores[i]) for i in keep]
    positive = [labels[i] == 1 for i in keep]
    n_pos = sum(positive)
    curve = [(0.0, 1.0)]
    for cut in sorted(set(scores), reverse=True):
        tp = sum(1 for s, p in zip(scores, positive) if s >= cut and p)
        fp = sum(1 for s, p in zip(scores, positive) if s >= cut and not p)
        curve.append((tp / n_pos, tp / (tp + fp)))
    total = 0.0
    for t in np.linspace(0, 1, 11):
        total += max([p for r, p in curve if r >= t], default=0.0)
    return 100 * total / 11


def test_mean_per_class_matches_sklearn_balanced_accuracy():
    rng = np.random.default_rng(0)
    for n, classes in ((300, 7), (50, 12)):
        target = rng.integers(0, classes, size=n)
        # Mostly right, sometimes a class that never occurs in target (must not be averaged).
        pred = np.where(rng.random(n) < 0.6, target, rng.integers(0, classes + 3, size=n))
        ours = mean_per_class_accuracy(torch.tensor(pred), torch.tensor(target))
        with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
            ref = balanced_accuracy_score(target, pred)
        assert ours == pytest.approx(100 * ref)


def test_mean_per_class_hand_example_differs_from_top1():
    # Class 0: 8 of 8 right; class 1: 1 of 2 right -> mean per class 75 %, top-1 90 %.
    target = np.array([0] * 8 + [1, 1])
    pred = np.array([0] * 8 + [1, 0])
    assert mean_per_class_accuracy(pred, target) == pytest.approx(75.0)
    assert float((pred == target).mean() * 100) == pytest.approx(90.0)
    with pytest.raises(ValueError):
        mean_per_class_accuracy(pred[:3], target)
    with pytest.raises(ValueError):
        mean_per_class_accuracy(np.zeros((10, 2)), target)


def test_voc07_ap_matches_brute_force_with_ties_and_difficult():
    rng = np.random.default_rng(1)
    for trial in range(40):
        n = int(rng.integers(5, 60))
        # Rounded scores make many ties; labels include difficult (-1) rows.
        scores = np.round(rng.normal(size=n), 1)
        labels = rng.choice([1, 0, -1], size=n, p=[0.3, 0.55, 0.15])
        if not (labels == 1).any():
            labels[0] = 1
        assert voc07_ap(scores, labels) == pytest.approx(_brute_voc07_ap(scores, labels)), trial


def test_voc07_ap_hand_examples():
    # Perfect ranking.
    assert voc07_ap([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == pytest.approx(100.0)
    # Both negatives ranked first: the only points are (r 0.5, p 1/3), (r 1, p 1/2), plus (r 0, p 1),
    # so t = 0 scores 1 and t = 0.1 .. 1 score 1/2: (1 + 10 * 0.5) / 11.
    assert voc07_ap([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == pytest.approx(100 * 6 / 11)
    # Recall exactly 3/10 falls short of linspace's t = 0.30000000000000004 (ssl-transfer's thresholds):
    # 3 positives, 10 negatives, 7 positives -> t = 0 .. 0.2 score 1, t = 0.3 .. 1 score 10/20.
    ranked = [1] * 3 + [0] * 10 + [1] * 7
    assert voc07_ap(-np.arange(20.0), ranked) == pytest.approx(100 * (3 + 8 * 0.5) / 11)
    # A difficult example ranked first is ignored, not counted as a false positive.
    assert voc07_ap([5.0, 0.9, 0.8, 0.2], [-1, 1, 1, 0]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no positive"):
        voc07_ap([0.3, 0.2], [0, -1])
    with pytest.raises(ValueError, match="labels must be"):
        voc07_ap([0.3, 0.2], [2, 1])


def test_voc07_map_means_classes_and_ignores_difficult():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(40, 5))
    targets = rng.choice([1, 0, -1], size=(40, 5), p=[0.3, 0.6, 0.1])
    targets[0, :] = 1
    expected = np.mean([_brute_voc07_ap(scores[:, c], targets[:, c]) for c in range(5)])
    assert voc07_map(torch.tensor(scores), torch.tensor(targets)) == pytest.approx(expected)
    # bfloat16 scores (autocast outputs) are read as the values they hold.
    half = torch.tensor(scores).bfloat16()
    assert voc07_map(half, targets) == pytest.approx(voc07_map(half.double().numpy(), targets))
    # Changing the score of any difficult entry changes nothing.
    moved = scores.copy()
    moved[targets == -1] = rng.normal(size=int((targets == -1).sum())) * 100
    assert voc07_map(moved, targets) == pytest.approx(voc07_map(scores, targets))
    # A class without positives is left out of the mean; with none at all, mAP is undefined.
    no_pos = targets.copy()
    no_pos[:, 4] = np.where(no_pos[:, 4] == 1, 0, no_pos[:, 4])
    assert voc07_map(scores, no_pos) == pytest.approx(np.mean([_brute_voc07_ap(scores[:, c], targets[:, c])
                                                               for c in range(4)]))
    with pytest.raises(ValueError, match="no class has a positive"):
        voc07_map(scores, np.zeros_like(targets))
    with pytest.raises(ValueError):
        voc07_map(scores, targets[:, :3])


def _feed(evaluator, scores, targets, batch):
    evaluator.reset()
    for start in range(0, len(scores), batch):
        evaluator.process(scores[start:start + batch], targets[start:start + batch])
    return evaluator.evaluate()


def test_evaluators_do_not_depend_on_batching():
    rng = np.random.default_rng(3)
    logits, labels = torch.tensor(rng.normal(size=(70, 6)), dtype=torch.float32), torch.tensor(rng.integers(0, 6, 70))
    multi = torch.tensor(rng.choice([1, 0, -1], size=(70, 4), p=[0.3, 0.6, 0.1]))
    multi[0] = 1
    cases = [(MeanPerClassEvaluator(), logits, labels), (VOC07MapEvaluator(), logits[:, :4], multi),
             (ClassificationEvaluator(), logits, labels)]
    for evaluator, scores, targets in cases:
        once = _feed(evaluator, scores, targets, 70)
        for batch in (1, 9, 32):
            assert _feed(evaluator, scores, targets, batch) == pytest.approx(once)
    pred = logits.argmax(1).numpy()
    assert _feed(MeanPerClassEvaluator(), logits, labels, 16) == pytest.approx(
        {"mean_per_class": mean_per_class_accuracy(pred, labels), "top1": topk_accuracy(logits, labels, 1)})
    assert _feed(VOC07MapEvaluator(), logits[:, :4], multi, 16) == pytest.approx(
        {"voc07_map": voc07_map(logits[:, :4], multi)})


def test_evaluator_for_and_errors():
    assert isinstance(evaluator_for("top1"), ClassificationEvaluator)
    assert isinstance(evaluator_for("mean_per_class"), MeanPerClassEvaluator)
    assert isinstance(evaluator_for("voc07_map"), VOC07MapEvaluator)
    assert evaluator_for("top1") is not evaluator_for("top1")
    with pytest.raises(ValueError, match="top1, mean_per_class, voc07_map"):
        evaluator_for("map")
    for evaluator in (MeanPerClassEvaluator(), VOC07MapEvaluator()):
        with pytest.raises(ValueError, match="before any process"):
            evaluator.evaluate()
