"""Data kinds: every dataset spec says what its items are, and a task of one kind refuses a set of another."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes
from torchvision.transforms.v2 import functional as F

from mec_eval.data import (DATASETS, ITEM_CONTRACTS, DatasetSpec, build_dataset, check_item, dataset_spec,
                           require_kind)
from mec_eval.data.shapes import object_mask, render_scene
from mec_eval.utils import UserError
from mec_eval.vocabulary import DATA_KINDS


def _spec(name="coco2017", kind="detection"):
    return DatasetSpec(name, 64, 80, False, "root/annotations", lambda *_: None, kind=kind)


def test_every_kind_has_an_item_contract_and_the_registry_kinds_follow_the_vocabulary():
    assert set(ITEM_CONTRACTS) == set(DATA_KINDS) == {"classification", "detection", "video"}
    kinds = {name: dataset_spec(name).kind for name in DATASETS.names()}
    assert {kinds[name] for name in ("pascal-voc", "coco2017", "shapes-detection")} == {"detection"}
    assert kinds["digits"] == kinds["voc2007"] == "classification"  # voc2007: the multi-label transfer set


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_embedded_items_keep_the_classification_contract(name):
    plain = build_dataset(name, None, "test")
    check_item("classification", plain[0])
    tensors = build_dataset(name, None, "test", transform=F.to_image, kind="classification")
    image, label = tensors[3]
    check_item("classification", (image, label))
    assert isinstance(label, int) and label == tensors.targets[3]


def test_a_multi_label_row_is_a_classification_target():
    check_item("classification", (torch.zeros(3, 8, 8), np.array([1, 0, -1])))
    with pytest.raises(ValueError, match="the target is float, not an int class id"):
        check_item("classification", (torch.zeros(3, 8, 8), 0.5))


def _detection_item():
    """A shapes scene as torchvision's detection models take it: main shape and distractors as objects."""
    image, objects = render_scene(np.random.default_rng(3), image_size=48)
    masks = torch.from_numpy(np.stack([object_mask(o, 48) for o in objects])).to(torch.uint8)
    keep = masks.flatten(1).any(1).bool()  # a distractor may be hidden under the main shape
    masks = masks[keep]
    target = {"boxes": masks_to_boxes(masks), "labels": torch.arange(1, len(masks) + 1), "masks": masks}
    return F.to_dtype(F.to_image(image), torch.float32, scale=True), target


def test_a_detection_item_from_the_shapes_generator_meets_the_contract():
    image, target = _detection_item()
    check_item("detection", (image, target))
    check_item("detection", (image, {k: v for k, v in target.items() if k != "masks"}))  # masks are optional


@pytest.mark.parametrize("break_it, message", [
    (lambda t: t.update(boxes=t["boxes"][:, :2]), r"target\['boxes'\] is not a float tensor \[N, 4\]"),
    (lambda t: t.update(labels=t["labels"].int()), r"target\['labels'\] is not an int64 tensor"),
    (lambda t: t.update(boxes=t["boxes"][:, [2, 3, 0, 1]]), "x1 <= x2 and y1 <= y2"),
    (lambda t: t.update(masks=t["masks"][:, :10]), r"target\['masks'\] is not a uint8 tensor"),
    (lambda t: t.pop("labels"), r"target\['labels'\] is missing"),
])
def test_a_broken_detection_item_is_named(break_it, message):
    image, target = _detection_item()
    break_it(target)
    with pytest.raises(ValueError, match=message):
        check_item("detection", (image, target))


def test_a_video_item_has_one_annotation_per_frame():
    frames = [torch.zeros(3, 8, 8)] * 4
    check_item("video", SimpleNamespace(name="bear", frames=frames, annotations=[{}] * 4))
    with pytest.raises(ValueError, match="4 frames but 3 per-frame annotations"):
        check_item("video", SimpleNamespace(name="bear", frames=frames, annotations=[{}] * 3))


def test_a_classification_task_refuses_a_dataset_of_another_kind():
    with pytest.raises(UserError, match=r"^dataset coco2017 is a detection dataset, but this task reads "
                                        r"classification data \(choose aircraft, caltech101, .*, digits, "):
        require_kind(_spec(), "classification")
    with pytest.raises(UserError, match=r"dataset digits is a classification dataset, but this task reads "
                                        r"detection data \(choose .*coco2017.*pascal-voc"):
        build_dataset("digits", None, "train", kind="detection")
    assert require_kind(_spec(), "detection").kind == "detection"


def test_a_spec_outside_the_vocabulary_or_of_an_unknown_kind_is_a_bug():
    with pytest.raises(ValueError, match="unknown dataset 'coco2071'; did you mean coco2017"):
        _spec("coco2071")
    with pytest.raises(ValueError, match="kind must be one of"):
        _spec(kind="segmentation")
