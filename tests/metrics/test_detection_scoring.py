"""score_detections on shapes-detection sets in both layouts: equal to the evaluators fed directly; bad files."""
from __future__ import annotations

import json

import pytest
import torch

from mec_eval.data.detection import COCODetection, VOCDetection, read_class_list
from mec_eval.data.shapes_detection import write_shapes_detection
from mec_eval.metrics.coco import COCOEvaluator, coco_results
from mec_eval.metrics.detection_scoring import score_detections
from mec_eval.metrics.voc import VOCEvaluator
from mec_eval.utils import UserError


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("gt")
    return (write_shapes_detection(root, "voc", n_train=1, n_test=6, image_size=64),
            write_shapes_detection(root, "coco", n_train=1, n_test=6, image_size=64))


def _shifted(target, k: int):
    boxes = target["boxes"].double() + torch.tensor([k % 3, 0.0, k % 3, 1.0], dtype=torch.float64)
    return {"boxes": boxes, "scores": torch.linspace(1, 0.1, len(boxes), dtype=torch.float64), "labels": target["labels"]}


def test_voc_file_scores_as_the_evaluator(sets, tmp_path):
    devkit = sets[0]
    data = VOCDetection(devkit, (("2007", "test"),), classes=read_class_list(devkit / "VOC2007"))
    evaluator, entries = VOCEvaluator(data.classes), []
    for k in range(len(data)):
        target = data.annotations(k)
        output = _shifted(target, k)
        evaluator.process([target["image_id"]], [target], [output])
        for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(), output["labels"].tolist()):
            entries.append({"image_id": target["image_id"], "category_id": data.classes[label - 1],
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score})
    pred = tmp_path / "voc.json"
    pred.write_text(json.dumps(entries))
    metrics, extra, name = score_detections("voc07", devkit, pred)
    assert name == "shapes-detection" and metrics == pytest.approx(evaluator.evaluate())
    assert extra["per_class_AP50"] == pytest.approx(evaluator.per_class()) and extra["images"] == 6
    assert 0 < metrics["AP"] < 100


def test_coco_file_scores_as_the_evaluator(sets, tmp_path):
    data = COCODetection(sets[1], "val")
    ids, outputs = [], []
    for k in range(len(data)):
        target = data[k][1]
        ids.append(target["image_id"])
        outputs.append({**_shifted(target, k), "masks": target["masks"].float()})
    evaluator = COCOEvaluator(data.coco, data.label_to_category_id)
    evaluator.process(ids, outputs)
    pred = tmp_path / "coco.json"
    pred.write_text(json.dumps(coco_results(ids, outputs, data.label_to_category_id)))
    metrics, extra, name = score_detections("coco", sets[1], pred)
    assert name == "shapes-detection" and metrics == pytest.approx(evaluator.evaluate(), nan_ok=True)
    assert len(metrics) == 12 and extra["detections"] == sum(len(o["boxes"]) for o in outputs)
    boxes_only = tmp_path / "boxes.json"
    boxes_only.write_text(json.dumps(coco_results(ids, outputs, data.label_to_category_id, ("bbox",))))
    assert set(score_detections("coco", sets[1], boxes_only)[0]) == {k for k in metrics if k.startswith("bbox_")}


GOOD_VOC = {"image_id": "000002", "category_id": "circle", "bbox": [1, 2, 10, 10], "score": 0.5}


@pytest.mark.parametrize("content, words", [
    ("{not json", ("not a readable JSON",)),
    ('{"image_id": 1}', ("holds a JSON dict", "list")),
    (json.dumps([3]), ("detection 0", "not an object")),
    (json.dumps([{"image_id": "000002", "bbox": [1, 2, 3, 4]}]), ("detection 0", "no category_id, score")),
    (json.dumps([GOOD_VOC, {**GOOD_VOC, "image_id": "999999"}]), ("detection 1", "'999999'")),
    (json.dumps([{**GOOD_VOC, "category_id": "unicorn"}]), ("category 'unicorn'",)),
    (json.dumps([{**GOOD_VOC, "category_id": 1}]), ("category '1'",)),
    (json.dumps([{**GOOD_VOC, "score": "high"}]), ("score high", "finite")),
    ('[{"image_id": "000002", "category_id": "circle", "bbox": [1, 2, 3, 4], "score": NaN}]', ("score nan",)),
    (json.dumps([{**GOOD_VOC, "bbox": [1, 2, 3]}]), ("bbox [1, 2, 3]",)),
    (json.dumps([{**GOOD_VOC, "bbox": [1, 2, -3, 4]}]), ("no negative size",)),
    (b"\xff\xfe\x00garbage", ("not a readable JSON",)),
])
def test_hostile_voc_files_are_one_line_errors(sets, tmp_path, content, words):
    pred = tmp_path / "pred.json"
    pred.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError) as excinfo:
        score_detections("voc07", sets[0], pred)
    message = str(excinfo.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_hostile_coco_files_and_arguments(sets, tmp_path):
    data = COCODetection(sets[1], "val", masks=False)
    image = data.ids[0]
    good = {"image_id": image, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.4}
    rle = {"size": [64, 64], "counts": "PPYo1"}
    cases = [([{**good, "image_id": str(image)}], "names image"), ([{**good, "category_id": 2}], "category .2."),
             ([{**good, "image_id": True}], "names image"),
             ([{**good, "segmentation": rle}, good], "no RLE segmentation"),
             ([{**good, "segmentation": {"size": [10, 10], "counts": "PP"}}], "not its image's")]
    for entries, words in cases:
        pred = tmp_path / "pred.json"
        pred.write_text(json.dumps(entries))
        with pytest.raises(UserError, match=words):
            score_detections("coco", sets[1], pred)
    with pytest.raises(UserError, match="no such file"):
        score_detections("coco", sets[1], tmp_path / "missing.json")
    with pytest.raises(UserError, match="choose voc07, voc0712, coco"):
        score_detections("sot", sets[1], tmp_path / "pred.json")
    with pytest.raises(UserError, match="expected layout"):
        score_detections("voc0712", tmp_path / "nowhere", tmp_path / "pred.json")
