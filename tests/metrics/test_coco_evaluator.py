"""COCOEvaluator against pycocotools' COCOeval run directly on the same detections (bbox and segm),
faster-coco-eval's identical stats, empty detections, batching and the result conversion."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util
from pycocotools.cocoeval import COCOeval

from mec_eval.data.detection import LOADERS
from mec_eval.metrics.coco import STAT_NAMES, COCOEvaluator, coco_results


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    return LOADERS["shapes-detection"](tmp_path_factory.mktemp("shapes"), "test", layout="coco", n_train=2,
                                       n_test=12, image_size=96)


def _noisy_outputs(dataset, seed: int = 0):
    """Per image: the ground truth jittered, relabelled now and then, plus a few false boxes; mask probabilities."""
    rng = np.random.default_rng(seed)
    ids, outputs = [], []
    for i in range(len(dataset)):
        _, target = dataset[i]
        n = len(target["boxes"])
        extra = int(rng.integers(0, 3))
        boxes = torch.cat([target["boxes"] + torch.tensor(rng.normal(0, 2.5, (n, 4)), dtype=torch.float32),
                           torch.tensor(rng.uniform(0, 40, (extra, 2)), dtype=torch.float32).repeat(1, 2)
                           + torch.tensor([0, 0, 20, 20.0])])
        labels = torch.cat([torch.where(torch.tensor(rng.random(n) < 0.8), target["labels"],
                                        torch.tensor(rng.integers(1, 6, n))), torch.tensor(rng.integers(1, 6, extra))])
        masks = torch.cat([target["masks"].float(), torch.zeros((extra, 96, 96))])
        masks = (masks * 0.8 + torch.tensor(rng.uniform(0, 0.4, masks.shape), dtype=torch.float32))[:, None]
        ids.append(target["image_id"])
        outputs.append({"boxes": boxes, "scores": torch.tensor(rng.random(n + extra), dtype=torch.float32),
                        "labels": labels, "masks": masks})
    return ids, outputs


def _reference(coco_gt, results, iou_type, image_ids):
    with contextlib.redirect_stdout(io.StringIO()):
        typed = [{k: v for k, v in r.items() if iou_type == "bbox" or k != "bbox"} for r in results]
        ev = COCOeval(coco_gt, coco_gt.loadRes(typed), iou_type)
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [s * 100 if s >= 0 else float("nan") for s in ev.stats[:6]]


@pytest.mark.parametrize("fast", [False, True])
def test_metrics_equal_cocoeval_run_directly(coco_set, fast):
    ids, outputs = _noisy_outputs(coco_set)
    evaluator = COCOEvaluator(coco_set.coco, coco_set.label_to_category_id, fast=fast)
    for cut in (slice(0, 3), slice(3, 4), slice(4, None)):
        evaluator.process(ids[cut], outputs[cut])
    metrics = evaluator.evaluate()
    results = coco_results(ids, outputs, coco_set.label_to_category_id)
    for iou_type in ("bbox", "segm"):
        expected = _reference(coco_set.coco, results, iou_type, sorted(ids))
        got = [metrics[f"{iou_type}_{name}"] for name in STAT_NAMES]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        assert 5 < metrics[f"{iou_type}_AP"] < 95
    per_class = evaluator.per_class()
    assert set(per_class) == {"bbox", "segm"} and set(per_class["bbox"]) == set(coco_set.classes)
    assert np.nanmean(list(per_class["bbox"].values())) == pytest.approx(metrics["bbox_AP"], abs=1e-9)


def test_results_follow_detectron2s_conversion(coco_set):
    image_id = coco_set.ids[0]
    mask = torch.zeros((1, 1, 96, 96))
    mask[0, 0, 10:20, 30:35] = 0.9
    mask[0, 0, 20, 30] = 0.5  # not above 0.5: outside the mask
    output = {"boxes": torch.tensor([[30.0, 10.0, 35.0, 20.0]]), "scores": torch.tensor([0.25]),
              "labels": torch.tensor([3]), "masks": mask}
    (result,) = coco_results([image_id], [output], coco_set.label_to_category_id)
    assert result["bbox"] == [30.0, 10.0, 5.0, 10.0] and result["score"] == 0.25
    assert result["category_id"] == coco_set.label_to_category_id[3] == 5 and result["image_id"] == image_id
    assert isinstance(result["segmentation"]["counts"], str)
    decoded = mask_util.decode({**result["segmentation"], "counts": result["segmentation"]["counts"].encode()})
    assert decoded.sum() == 50 and decoded[10:20, 30:35].all()
    assert "segmentation" not in coco_results([image_id], [output], coco_set.label_to_category_id, ("bbox",))[0]
    with pytest.raises(ValueError, match="labels"):
        coco_results([image_id], [{**output, "labels": torch.tensor([9])}], coco_set.label_to_category_id)
    with pytest.raises(ValueError, match="masks have shape"):
        coco_results([image_id], [{**output, "masks": mask[:, :, :50]}], coco_set.label_to_category_id,
                     image_sizes={image_id: (96, 96)})
    with pytest.raises(ValueError, match="non-finite"):
        coco_results([image_id], [{**output, "scores": torch.tensor([float("nan")])}], coco_set.label_to_category_id)


def test_empty_detections_score_zero_and_perfect_ones_100(coco_set):
    evaluator = COCOEvaluator(coco_set.coco, coco_set.label_to_category_id)
    none = {"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    evaluator.process(coco_set.ids, [none] * len(coco_set))
    metrics = evaluator.evaluate()
    assert len(metrics) == 12 and set(metrics.values()) == {0.0}
    evaluator.reset()
    perfect = []
    for i in range(len(coco_set)):
        target = coco_set[i][1]
        perfect.append({"boxes": target["boxes"], "scores": torch.ones(len(target["boxes"])),
                        "labels": target["labels"], "masks": target["masks"].float()})
    evaluator.process(coco_set.ids, perfect)
    metrics = evaluator.evaluate()
    assert metrics["bbox_AP"] == pytest.approx(100.0) and metrics["segm_AP"] == pytest.approx(100.0)
    evaluator.process(coco_set.ids[:1], perfect[:1])  # the same image again
    with pytest.raises(ValueError, match="processed twice"):
        evaluator.evaluate()


def test_bad_arguments(coco_set):
    with pytest.raises(ValueError, match="iou_types"):
        COCOEvaluator(coco_set.coco, coco_set.label_to_category_id, iou_types=("keypoints",))
    evaluator = COCOEvaluator(coco_set.coco, coco_set.label_to_category_id)
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluator.process_results([123456], [])
    with pytest.raises(ValueError, match="before any process"):
        evaluator.evaluate()
    with pytest.raises(ValueError, match="after evaluate"):
        evaluator.per_class()
