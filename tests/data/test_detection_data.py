"""VOC / COCO detection loaders on tiny fixtures in the release layouts, the shapes-detection writer, bad inputs."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_util

from mec_eval.data import build_dataset, check_item, dataset_spec
from mec_eval.data.detection import LOADERS, VOC_CLASSES, COCODetection, VOCDetection, read_class_list
from mec_eval.data.shapes_detection import CLASSES, MARKER, write_shapes_detection
from mec_eval.utils import UserError


def _jpeg(path: Path, h: int, w: int, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (value, 20, 200)).save(path)


def _obj(name: str, box, difficult: int | None = 0) -> str:
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    return (f"<object><name>{name}</name>{flag}<bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
            f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>")


def _voc(root: Path, year: str, image_set: str, images: dict[str, list[str]], h: int = 30, w: int = 40) -> Path:
    """A VOCdevkit/VOC<year> with the given id -> object XML snippets; returns the VOCdevkit folder."""
    base = root / "VOCdevkit" / f"VOC{year}"
    for image_id, objects in images.items():
        _jpeg(base / "JPEGImages" / f"{image_id}.jpg", h, w)
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{''.join(objects)}"
            "</annotation>")
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(images) + "\n")
    return root / "VOCdevkit"


def test_voc_reads_boxes_zero_based_with_difficult_flags_over_two_years(tmp_path):
    _voc(tmp_path, "2007", "trainval", {"000005": [_obj("chair", (1, 2, 10, 20)), _obj("dog", (5, 5, 40, 30), 1)],
                                        "000007": [_obj("tvmonitor", (3, 4, 3, 4), None)]})
    devkit = _voc(tmp_path, "2012", "trainval", {"2008_000002": [_obj("aeroplane", (2, 2, 8, 9))]})
    data = VOCDetection(devkit, (("2007", "trainval"), ("2012", "trainval")))
    assert len(data) == 3 and data.ids == ["000005", "000007", "2008_000002"] and data.classes == VOC_CLASSES
    image, target = data[0]
    check_item("detection", (image, target))
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert torch.equal(target["boxes"], torch.tensor([[0.0, 1.0, 10.0, 20.0], [4.0, 4.0, 40.0, 30.0]]))
    assert target["labels"].tolist() == [VOC_CLASSES.index("chair") + 1, VOC_CLASSES.index("dog") + 1]
    assert target["difficult"].tolist() == [False, True] and target["image_id"] == "000005" and target["year"] == "2007"
    one_pixel = data.annotations(1)  # no <difficult>: not difficult; a 1-pixel box is kept
    assert one_pixel["difficult"].tolist() == [False] and one_pixel["boxes"].tolist() == [[2.0, 3.0, 3.0, 4.0]]
    assert data.annotations(2)["year"] == "2012"
    # The parent of VOCdevkit works too, and the transform sees (image, target).
    flipped = VOCDetection(tmp_path, transform=lambda im, t: (im.flip(-1), {**t, "seen": True}))
    assert flipped[0][1]["seen"] and torch.equal(flipped[0][0], image.flip(-1))


def _coco_fixture(root: Path, split: str = "train") -> dict:
    """Three images: polygon + compressed RLE + crowd (uncompressed RLE) + a zero-width box; one without objects."""
    h, w = 20, 30
    rle_mask = np.zeros((h, w), dtype=np.uint8, order="F")
    rle_mask[2:6, 3:9] = 1
    rle = mask_util.encode(rle_mask)
    crowd = np.zeros((h, w), dtype=np.uint8)
    crowd[10:15, 0:4] = 1
    column = crowd.T.reshape(-1)  # uncompressed RLE counts, column-major, starting with a run of zeros
    changes = np.flatnonzero(np.diff(np.concatenate([[0], column, [1 - column[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    content = {
        "images": [{"id": 42, "file_name": "a.jpg", "height": h, "width": w},
                   {"id": 7, "file_name": "b.jpg", "height": h, "width": w},
                   {"id": 9, "file_name": "c.jpg", "height": h, "width": w}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 18, "iscrowd": 0, "bbox": [10, 4, 10, 8],
             "segmentation": [[10, 4, 20, 4, 20, 12, 10, 12]], "area": 80},
            {"id": 2, "image_id": 42, "category_id": 1, "iscrowd": 0, "bbox": [3, 2, 6, 4],
             "segmentation": {"size": [h, w], "counts": rle["counts"].decode()}, "area": 24},
            {"id": 3, "image_id": 42, "category_id": 3, "iscrowd": 1, "bbox": [0, 10, 4, 5],
             "segmentation": {"size": [h, w], "counts": counts}, "area": 20},
            {"id": 4, "image_id": 7, "category_id": 3, "iscrowd": 0, "bbox": [5, 5, 0, 3],
             "segmentation": [[5, 5, 5, 8, 5, 6]], "area": 0}]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(content))
    for image in content["images"]:
        _jpeg(root / f"{split}2017" / image["file_name"], h, w)
    return content


def test_coco_reads_polygon_rle_and_crowd_masks_with_contiguous_labels(tmp_path):
    _coco_fixture(tmp_path)
    with pytest.warns(UserWarning, match="dropped 1 annotation"):
        data = COCODetection(tmp_path, "train")
    assert data.ids == [42]  # train: image 7 (only a degenerate box) and 9 (nothing) are dropped
    assert data.classes == ("person", "car", "dog") and data.label_to_category_id == {1: 1, 2: 3, 3: 18}
    image, target = data[0]
    check_item("detection", (image, target))
    assert target["image_id"] == 42 and target["labels"].tolist() == [3, 1, 2]
    assert target["boxes"].tolist() == [[10, 4, 20, 12], [3, 2, 9, 6], [0, 10, 4, 15]]
    assert target["iscrowd"].tolist() == [False, False, True]
    masks = target["masks"]
    assert masks.shape == (3, 20, 30) and masks.dtype == torch.uint8
    assert masks[1].sum() == 24 and masks[1][2:6, 3:9].all()  # the compressed RLE
    assert masks[2].sum() == 20 and masks[2][10:15, 0:4].all()  # the crowd's uncompressed RLE
    assert masks[0][5:11, 11:19].all() and masks[0].sum() >= 80  # the polygon, rasterised by pycocotools
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = COCODetection(tmp_path, "train", masks=False, drop_empty=False)
    assert kept.ids == [7, 9, 42] and "masks" not in kept[0][1] and kept[0][1]["boxes"].shape == (0, 4)


def test_shapes_writer_round_trip_deterministic_and_reused(tmp_path):
    voc = write_shapes_detection(tmp_path / "a", "voc", n_train=6, n_test=4, image_size=64, seed=3)
    coco = write_shapes_detection(tmp_path / "a", "coco", n_train=6, n_test=4, image_size=(64, 80), seed=3)
    again = write_shapes_detection(tmp_path / "b", "coco", n_train=6, n_test=4, image_size=(64, 80), seed=3)
    for name in ("annotations/instances_train2017.json", "annotations/instances_val2017.json"):
        assert (coco / name).read_bytes() == (again / name).read_bytes()
    first_jpeg = min((coco / "val2017").iterdir())
    assert first_jpeg.read_bytes() == (again / "val2017" / first_jpeg.name).read_bytes()
    stamp = (coco / MARKER).stat().st_mtime_ns
    assert write_shapes_detection(tmp_path / "a", "coco", n_train=6, n_test=4, image_size=(64, 80), seed=3) == coco
    assert (coco / MARKER).stat().st_mtime_ns == stamp and not list((tmp_path / "a").glob(".*"))

    train = COCODetection(coco, "train")
    content = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    kinds = [type(a["segmentation"]).__name__ for a in content["annotations"]]
    assert {"list", "dict"} <= set(kinds)  # both polygons and RLE appear
    for i in range(len(train)):
        image, target = train[i]
        assert image.shape == (3, 64, 80) and 1 <= len(target["boxes"]) <= 4
        for box, mask in zip(target["boxes"], target["masks"]):
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]  # boxes = the masks' extents

    assert read_class_list(voc / "VOC2007") == CLASSES
    test = VOCDetection(voc, (("2007", "test"),), classes=CLASSES)
    assert len(test) == 4 and len(VOCDetection(voc, classes=CLASSES)) == 6
    difficult = [VOCDetection(voc, classes=CLASSES).annotations(i)["difficult"] for i in range(6)]
    assert all(d.dtype == torch.bool for d in difficult)
    bigger = write_shapes_detection(tmp_path / "c", "voc", n_train=40, n_test=2, image_size=48)
    flags = torch.cat([VOCDetection(bigger, classes=CLASSES).annotations(i)["difficult"] for i in range(40)])
    assert 0 < int(flags.sum()) < len(flags)  # a few difficult objects


def test_registry_builds_the_detection_sets(tmp_path):
    assert dataset_spec("pascal-voc").kind == dataset_spec("coco2017").kind == "detection"
    assert dataset_spec("shapes-detection").embedded and not dataset_spec("coco2017").embedded
    data = build_dataset("shapes-detection", str(tmp_path), "test", kind="detection")
    check_item("detection", data[0])
    assert data.classes == CLASSES
    coco = LOADERS["shapes-detection"](tmp_path, "test", layout="coco", n_train=3, n_test=2, image_size=48)
    assert "masks" in coco[0][1]
    _voc(tmp_path / "v", "2007", "test", {"000001": [_obj("cat", (1, 1, 5, 5))]})
    assert len(build_dataset("pascal-voc", str(tmp_path / "v"), "test07", kind="detection")) == 1
    with pytest.raises(UserError, match="unknown split"):
        build_dataset("pascal-voc", str(tmp_path / "v"), "train", kind="detection")


def _one_line(excinfo, *words: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message and all(w in message for w in words), message


@pytest.mark.parametrize("case, words", [
    ("no_root", ("no folder", "expected layout")),
    ("no_listing", ("missing", "trainval.txt", "expected layout")),
    ("malformed", ("000001.xml", "not well-formed XML")),
    ("no_object", ("000001.xml", "no <object>")),
    ("unknown_class", ("'unicorn'", "not one of")),
    ("empty_box", ("000001.xml", "empty box")),
    ("no_bndbox_field", ("000001.xml", "<ymax>")),
    ("missing_image", ("000001.jpg", "missing")),
    ("missing_xml", ("000001.xml", "missing")),
])
def test_voc_bad_inputs_are_one_line_errors(tmp_path, case, words):
    objects = {"unknown_class": [_obj("unicorn", (1, 1, 5, 5))], "empty_box": [_obj("cat", (6, 1, 5, 5))],
               "no_object": [], "no_bndbox_field": [("<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                                                     "<xmax>3</xmax></bndbox></object>")]}.get(case, [_obj("cat", (1, 1, 5, 5))])
    devkit = _voc(tmp_path, "2007", "trainval", {"000001": objects})
    base = devkit / "VOC2007"
    if case == "malformed":
        (base / "Annotations" / "000001.xml").write_text("<annotation><size>")
    if case == "missing_image":
        (base / "JPEGImages" / "000001.jpg").unlink()
    if case == "missing_xml":
        (base / "Annotations" / "000001.xml").unlink()
    if case == "no_listing":
        (base / "ImageSets" / "Main" / "trainval.txt").unlink()
    with pytest.raises(UserError) as excinfo:
        VOCDetection(tmp_path / "nowhere" if case == "no_root" else devkit)
    _one_line(excinfo, *words)


def test_voc_image_of_another_size_than_its_annotation(tmp_path):
    devkit = _voc(tmp_path, "2007", "trainval", {"000001": [_obj("cat", (1, 1, 5, 5))]})
    _jpeg(devkit / "VOC2007" / "JPEGImages" / "000001.jpg", 10, 10)
    with pytest.raises(UserError) as excinfo:
        VOCDetection(devkit)[0]
    _one_line(excinfo, "000001.jpg", "10x10", "40x30")


def _break_coco(content: dict, case: str) -> dict | str:
    anns = content["annotations"]
    if case == "not_json":
        return "{not json"
    if case == "not_instances":
        return json.dumps([1, 2])
    if case == "unknown_category":
        anns[0]["category_id"] = 99
    if case == "unknown_image":
        anns[0]["image_id"] = 1234
    if case == "negative_box":
        anns[0]["bbox"] = [1, 1, -3, 4]
    if case == "nan_box":
        anns[0]["bbox"] = [1, 1, float("nan"), 4]
    if case == "no_segmentation":
        del anns[1]["segmentation"]
    if case == "bad_polygon":
        anns[0]["segmentation"] = [[1, 2, 3]]
    if case == "bad_image_record":
        content["images"][0]["height"] = "tall"
    return json.dumps(content)


@pytest.mark.parametrize("case, words", [
    ("not_json", ("instances_train2017.json", "not a readable JSON")),
    ("not_instances", ("not a COCO instances file",)),
    ("unknown_category", ("annotation 1", "category_id 99")),
    ("unknown_image", ("annotation 1", "image 1234")),
    ("negative_box", ("annotation 1", "no negative size")),
    ("nan_box", ("annotation 1", "finite")),
    ("no_segmentation", ("annotation 2", "no segmentation", "masks=False")),
    ("bad_polygon", ("annotation 1", "malformed segmentation")),
    ("bad_image_record", ("image record", "height")),
    ("missing_image", ("c.jpg", "missing", "expected layout")),
    ("no_json", ("missing", "instances_train2017.json", "expected layout")),
])
def test_coco_bad_inputs_are_one_line_errors(tmp_path, case, words):
    content = _coco_fixture(tmp_path)
    path = tmp_path / "annotations" / "instances_train2017.json"
    path.write_text(_break_coco(content, case))
    if case == "missing_image":
        (tmp_path / "train2017" / "c.jpg").unlink()
    if case == "no_json":
        path.unlink()
    with pytest.raises(UserError) as excinfo, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        COCODetection(tmp_path, "train", drop_empty=False)
    _one_line(excinfo, *words)


def test_coco_wrong_split_and_shapes_folder_of_other_content(tmp_path):
    with pytest.raises(UserError, match="unknown split"):
        COCODetection(tmp_path, "test")
    first = write_shapes_detection(tmp_path, "coco", n_train=1, n_test=1, image_size=32)
    (first / MARKER).write_text("{}")
    with pytest.raises(UserError, match="remove it"):
        write_shapes_detection(tmp_path, "coco", n_train=1, n_test=1, image_size=32)
    with pytest.raises(ValueError, match="layout"):
        write_shapes_detection(tmp_path, "yolo")
