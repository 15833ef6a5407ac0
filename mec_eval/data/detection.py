"""Detection datasets read from their release layouts: PASCAL VOC (VOCdevkit XML) and COCO 2017 (instances json).

Items follow ``ITEM_CONTRACTS["detection"]`` of :mod:`mec_eval.data`: ``(image float [3, H, W] in [0, 1]
RGB, target dict)`` with ``transform(image, target) -> (image, target)`` applied when given. Every
annotation is read and checked when the dataset is built (a few seconds for VOC07+12 or COCO
train2017), so a bad file fails before training with one line naming it.

Conventions, as detectron2 reads these sets (``data/datasets/pascal_voc.py``, ``coco.py``):

* VOC boxes are 1-based inclusive pixel indices; 1 is subtracted from ``xmin`` / ``ymin`` so that
  ``(xmin=1, xmax=W)`` covers the whole image as ``(0, W)``. Difficult objects stay in the targets
  (flagged; the evaluator ignores them). A box with ``xmax < xmin`` or ``ymax < ymin`` is an error
  (under the inclusive convention every valid box has an area of at least one pixel).
* COCO boxes are XYWH, turned into XYXY; labels are contiguous 1..K in sorted category-id order.
  Crowd objects stay in the targets flagged by ``iscrowd``. Boxes of zero width or height exist in
  the release and are dropped with one warning giving the count (detectron2 drops them in training
  through ``filter_empty_instances``; torchvision's reference does the same); a negative or
  non-finite size is an error. ``drop_empty`` (default: for the train split) drops images without a
  usable non-crowd object, as ``DATASETS.FILTER_EMPTY_ANNOTATIONS``.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mec_eval.data.decode import decode_rgb
from mec_eval.data.folders import root_dir
from mec_eval.data.shapes_detection import CLASS_LIST_FILE, write_shapes_detection
from mec_eval.data.shapes_detection import CLASSES as SHAPE_CLASSES
from mec_eval.data.transfer import VOC_CLASSES
from mec_eval.utils import UserError

LAYOUTS = {
    "pascal-voc": "VOCdevkit/\n  VOC2007/ (and/or VOC2012/)\n    Annotations/<id>.xml\n    JPEGImages/<id>.jpg\n"
                  "    ImageSets/Main/{train,val,trainval,test}.txt",
    "coco2017": "coco/  (any folder name)\n  annotations/instances_train2017.json  instances_val2017.json\n"
                "  train2017/<file_name>.jpg  val2017/<file_name>.jpg",
}
# The VOC image sets of the MEC Table 3 tasks (detectron2's voc_2007_trainval, voc_2012_trainval, voc_2007_test).
VOC_SPLITS = {"trainval07": (("2007", "trainval"),), "trainval0712": (("2007", "trainval"), ("2012", "trainval")),
              "test07": (("2007", "test"),)}
COCO_SPLITS = ("train", "val")

__all__ = ["COCODetection", "COCO_SPLITS", "LAYOUTS", "LOADERS", "SHAPE_CLASSES", "SPLITS", "VOCDetection",
           "VOC_CLASSES", "VOC_SPLITS", "coco2017", "fail", "pascal_voc", "read_class_list", "shapes_detection",
           "shapes_root", "voc_root"]


def fail(name: str, problem: str) -> UserError:
    """The one error for a bad dataset path: what went wrong, then the expected layout on one line."""
    return UserError(f"{name}: {problem}; expected layout: {' '.join(LAYOUTS[name].split())}")


def _image_tensor(path: Path, height: int, width: int) -> torch.Tensor:
    """The image as float [3, H, W] in [0, 1]; a size other than its annotation's is an error naming it."""
    image = decode_rgb(path)
    if tuple(image.shape[1:]) != (height, width):
        raise UserError(f"{path} is {image.shape[2]}x{image.shape[1]} pixels but its annotation says "
                        f"{width}x{height}; the image and annotation files do not belong together")
    return image.float().div_(255.0)


def read_class_list(voc_year_dir: Path) -> tuple[str, ...] | None:
    """The class names of a non-VOC set in the devkit layout (``VOC2007/classes.txt``), or None."""
    path = Path(voc_year_dir) / CLASS_LIST_FILE
    if not path.is_file():
        return None
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names or len(set(names)) != len(names):
        raise UserError(f"{path} must list distinct class names, one a line")
    return names


# -- PASCAL VOC ---------------------------------------------------------------------------------
def _text(node: ET.Element, tag: str, path: Path, where: str) -> str:
    found = node.find(tag)
    if found is None or found.text is None or not found.text.strip():
        raise UserError(f"{path}: {where} has no <{tag}>; the annotation file is not a VOC annotation")
    return found.text.strip()


def _number(node: ET.Element, tag: str, path: Path, where: str) -> float:
    text = _text(node, tag, path, where)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UserError(f"{path}: {where} <{tag}> is {text!r}, not a number")
    return value


def _parse_voc(path: Path, index: dict[str, int], need_objects: bool) -> dict:
    """One VOC XML as numpy arrays: boxes [N, 4] float32 (0-based x1, y1), labels int64 from 1, difficult bool."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise UserError(f"{path} is not well-formed XML ({err}); replace the annotation file") from None
    except OSError as err:
        raise UserError(f"{path} cannot be read ({err.strerror or err})") from None
    size = root.find("size")
    if size is None:
        raise UserError(f"{path}: <annotation> has no <size>; the annotation file is not a VOC annotation")
    width, height = (int(_number(size, tag, path, "<size>")) for tag in ("width", "height"))
    boxes, labels, difficult = [], [], []
    for number, obj in enumerate(root.findall("object"), start=1):
        where = f"<object> {number}"
        name = _text(obj, "name", path, where)
        if name not in index:
            raise UserError(f"{path}: {where} is a {name!r}, not one of the dataset's classes "
                            f"({', '.join(index)})")
        flag = obj.find("difficult")  # absent on a few VOC2012 objects: not difficult
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise UserError(f"{path}: {where} has no <bndbox>; the annotation file is not a VOC annotation")
        x1, y1, x2, y2 = (_number(bndbox, tag, path, where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        if x2 < x1 or y2 < y1:
            raise UserError(f"{path}: {where} has an empty box (xmin {x1:g}, ymin {y1:g}, xmax {x2:g}, "
                            f"ymax {y2:g}); fix or remove the object")
        boxes.append((x1 - 1.0, y1 - 1.0, x2, y2))
        labels.append(index[name] + 1)
        difficult.append(flag is not None and (flag.text or "0").strip() == "1")
    if need_objects and not boxes:
        raise UserError(f"{path} has no <object>; every image of a VOC training set is annotated")
    return {"boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4), "labels": np.asarray(labels, dtype=np.int64),
            "difficult": np.asarray(difficult, dtype=bool), "width": width, "height": height}


def voc_root(root) -> Path:
    """The VOCdevkit folder: ``root``, or ``root/VOCdevkit`` when ``root`` holds it and no VOC<year>/ itself."""
    base = root_dir("pascal-voc", root, fail)
    if not any((base / f"VOC{y}").is_dir() for y in ("2007", "2012")) and (base / "VOCdevkit").is_dir():
        base = base / "VOCdevkit"
    return base


class VOCDetection(Dataset):
    """PASCAL VOC detection over one or more ``(year, image_set)`` sets of a ``VOCdevkit`` folder.

    ``classes`` defaults to the 20 VOC classes (devkit order); a synthetic set in the devkit layout
    passes its own (:func:`read_class_list`). ``check_images=False`` skips the JPEG existence check
    (scoring detections needs the annotations only).
    """

    def __init__(self, root, sets: Sequence[tuple[str, str]] = (("2007", "trainval"),), transform=None,
                 classes: Sequence[str] = VOC_CLASSES, check_images: bool = True):
        base = voc_root(root)
        self.classes = tuple(classes)
        self.transform = transform
        index = {name: i for i, name in enumerate(self.classes)}
        self._items: list[tuple[str, str, Path]] = []  # (year, image id, JPEG path)
        self._annotations: list[dict] = []
        for year, image_set in sets:
            year_dir = base / f"VOC{year}"
            listing = year_dir / "ImageSets" / "Main" / f"{image_set}.txt"
            if not listing.is_file():
                raise fail("pascal-voc", f"missing {listing}")
            try:
                ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as err:
                raise fail("pascal-voc", f"cannot read {listing} ({err})") from None
            for image_id in ids:
                xml, jpeg = year_dir / "Annotations" / f"{image_id}.xml", year_dir / "JPEGImages" / f"{image_id}.jpg"
                if not xml.is_file():
                    raise fail("pascal-voc", f"annotation {xml} of image {image_id} listed in {listing} is missing")
                if check_images and not jpeg.is_file():
                    raise fail("pascal-voc", f"image {jpeg} listed in {listing} is missing")
                self._annotations.append(_parse_voc(xml, index, need_objects=image_set != "test"))
                self._items.append((year, image_id, jpeg))
        if not self._items:
            raise fail("pascal-voc", f"the image sets {list(sets)} list no images")
        self.ids = [image_id for _, image_id, _ in self._items]

    def __len__(self) -> int:
        return len(self._items)

    def annotations(self, index: int) -> dict:
        """The target of image ``index`` (without reading the image), plus its "width" and "height"."""
        year, image_id, _ = self._items[index]
        parsed = self._annotations[index]
        return {"boxes": torch.from_numpy(parsed["boxes"].copy()), "labels": torch.from_numpy(parsed["labels"].copy()),
                "difficult": torch.from_numpy(parsed["difficult"].copy()), "image_id": image_id, "year": year,
                "width": parsed["width"], "height": parsed["height"]}

    def __getitem__(self, index: int):
        target = self.annotations(index)
        image = _image_tensor(self._items[index][2], target.pop("height"), target.pop("width"))
        return self.transform(image, target) if self.transform is not None else (image, target)


# -- COCO ---------------------------------------------------------------------------------------
def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise fail("coco2017", f"missing {path}")
    try:
        content = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path} is not a readable JSON file ({' '.join(str(err).split())})") from None
    if not isinstance(content, dict) or not all(isinstance(content.get(k), list)
                                                for k in ("images", "annotations", "categories")):
        raise UserError(f"{path} is not a COCO instances file (it needs lists 'images', 'annotations', "
                        "'categories')")
    return content


def _finite(values, count: int) -> bool:
    return (isinstance(values, list) and len(values) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values))


def _check_segmentation(ann: dict, image: dict, path: Path) -> None:
    """A polygon list (each even, >= 6 coordinates) or an RLE of the image's size, else an error."""
    seg, where = ann.get("segmentation"), f"{path}: annotation {ann.get('id')}"
    if isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                                             and _finite(p, len(p)) for p in seg):
        return
    if isinstance(seg, dict) and isinstance(seg.get("counts"), (str, list)) \
            and seg.get("size") == [image["height"], image["width"]]:
        return
    if seg is None or seg == []:
        raise UserError(f"{where} has no segmentation; masks were requested from a set without them "
                        "(use masks=False / a box-only task)")
    raise UserError(f"{where} has a malformed segmentation (polygons of >= 3 points, or an RLE "
                    f"{{size: [{image['height']}, {image['width']}], counts}})")


def _check_image_record(image, path: Path) -> None:
    if not (isinstance(image, dict) and isinstance(image.get("id"), int) and isinstance(image.get("file_name"), str)
            and all(isinstance(image.get(k), int) and image[k] > 0 for k in ("height", "width"))):
        raise UserError(f"{path}: image record {str(image)[:80]} needs an int 'id', a 'file_name' and positive "
                        "'height' / 'width'")


class COCODetection(Dataset):
    """COCO 2017 instances of ``split`` ("train" or "val") through pycocotools' ``COCO``.

    ``masks`` adds "masks" uint8 [N, H, W] (``annToMask``: polygons and RLE); ``drop_empty`` (None:
    True for "train") drops images without a non-crowd object; ``check_images=False`` skips the
    JPEG existence check (scoring needs the annotations only).
    """

    def __init__(self, root, split: str = "train", transform=None, masks: bool = True,
                 drop_empty: bool | None = None, check_images: bool = True):
        from pycocotools.coco import COCO

        if split not in COCO_SPLITS:
            raise UserError(f"coco2017: unknown split {split!r} (choose train or val)")
        base = root_dir("coco2017", root, fail)
        path = base / "annotations" / f"instances_{split}2017.json"
        content = _load_json(path)
        self.transform, self.masks, self.image_dir = transform, masks, base / f"{split}2017"
        categories = content["categories"]
        if not categories or not all(isinstance(c, dict) and isinstance(c.get("id"), int) for c in categories):
            raise UserError(f"{path}: 'categories' must be records with int ids (and names)")
        categories = sorted(categories, key=lambda c: c["id"])
        self.classes = tuple(str(c.get("name", c["id"])) for c in categories)
        self.label_to_category_id = {label: c["id"] for label, c in enumerate(categories, start=1)}
        self._label_of = {cat: label for label, cat in self.label_to_category_id.items()}
        for image in content["images"]:
            _check_image_record(image, path)
        images = {image["id"]: image for image in content["images"]}
        self._objects: dict[int, list[dict]] = {image_id: [] for image_id in images}
        dropped = self._check_annotations(content["annotations"], images, path)
        if dropped:
            warnings.warn(f"{path}: dropped {dropped} annotation(s) with a zero-width or zero-height box "
                          "(as detectron2 and torchvision do in training)", UserWarning, stacklevel=2)
        keep_empty = not (split == "train" if drop_empty is None else drop_empty)
        self.ids = [i for i in sorted(images) if keep_empty or any(not a["iscrowd"] for a in self._objects[i])]
        if check_images:
            for image_id in self.ids:
                if not (self.image_dir / images[image_id]["file_name"]).is_file():
                    raise fail("coco2017", f"image {self.image_dir / images[image_id]['file_name']} listed in "
                                           f"{path} is missing")
        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
            self.coco = COCO()
            self.coco.dataset = content
            self.coco.createIndex()

    def _check_annotations(self, annotations: list, images: dict, path: Path) -> int:
        """File each valid annotation under its image; return how many degenerate boxes were dropped."""
        dropped = 0
        for ann in annotations:
            if not isinstance(ann, dict):
                raise UserError(f"{path}: annotation {str(ann)[:60]} is not a record")
            where = f"{path}: annotation {ann.get('id')}"
            if ann.get("image_id") not in images:
                raise UserError(f"{where} refers to image {ann.get('image_id')!r}, which 'images' does not list")
            if ann.get("category_id") not in self._label_of:
                raise UserError(f"{where} has category_id {ann.get('category_id')!r}, which 'categories' does "
                                "not list")
            if not _finite(ann.get("bbox"), 4) or min(ann["bbox"][2:]) < 0:
                raise UserError(f"{where} has bbox {str(ann.get('bbox'))[:60]}; expected [x, y, width, height] "
                                "with finite numbers and no negative size")
            if self.masks:
                _check_segmentation(ann, images[ann["image_id"]], path)
            if min(ann["bbox"][2:]) == 0:
                dropped += 1
                continue
            self._objects[ann["image_id"]].append(
                {**ann, "iscrowd": bool(ann.get("iscrowd", 0))})
        return dropped

    def __len__(self) -> int:
        return len(self.ids)

    def annotations(self, index: int) -> dict:
        """The target of image ``index`` without reading the image or drawing masks, plus "width" / "height"."""
        image_id = self.ids[index]
        objects = self._objects[image_id]
        xywh = np.asarray([a["bbox"] for a in objects], dtype=np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        info = self.coco.imgs[image_id]
        return {"boxes": torch.from_numpy(boxes),
                "labels": torch.tensor([self._label_of[a["category_id"]] for a in objects], dtype=torch.int64),
                "iscrowd": torch.tensor([a["iscrowd"] for a in objects], dtype=torch.bool),
                "image_id": image_id, "width": info["width"], "height": info["height"]}

    def __getitem__(self, index: int):
        target = self.annotations(index)
        height, width = target.pop("height"), target.pop("width")
        image_id = self.ids[index]
        image = _image_tensor(self.image_dir / self.coco.imgs[image_id]["file_name"], height, width)
        if self.masks:
            drawn = [self.coco.annToMask(a) for a in self._objects[image_id]]
            target["masks"] = (torch.from_numpy(np.stack(drawn)) if drawn
                               else torch.zeros((0, height, width), dtype=torch.uint8))
        return self.transform(image, target) if self.transform is not None else (image, target)


# -- loaders by dataset name (what the registry in mec_eval.data calls) -------------------------
SHAPES_SPLITS = {"voc": {"train": (("2007", "trainval"),), "test": (("2007", "test"),)},
                 "coco": {"train": "train", "test": "val"}}


def shapes_root(root) -> Path:
    """Where shapes-detection is generated: ``root``, else ``$XDG_CACHE_HOME/mec-eval`` (``~/.cache/mec-eval``)."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mec-eval"


def pascal_voc(root, split: str, transform=None, **options) -> VOCDetection:
    """``split`` is a key of :data:`VOC_SPLITS`; ``options`` go to :class:`VOCDetection`."""
    return VOCDetection(root, VOC_SPLITS[split], transform, **options)


def coco2017(root, split: str, transform=None, **options) -> COCODetection:
    """``split`` is "train" or "val"; ``options`` (masks, drop_empty, check_images) go to :class:`COCODetection`."""
    return COCODetection(root, split, transform, **options)


def shapes_detection(root, split: str, transform=None, layout: str = "voc", masks: bool = True,
                     **options) -> Dataset:
    """The synthetic set (generated under :func:`shapes_root` on first use) read back in ``layout``.

    ``split`` is "train" or "test"; ``options`` (n_train, n_test, image_size, seed) go to
    :func:`~mec_eval.data.shapes_detection.write_shapes_detection`. The VOC layout has no masks.
    """
    if layout not in SHAPES_SPLITS:
        raise UserError(f"shapes-detection: unknown layout {layout!r} (choose voc or coco)")
    folder = write_shapes_detection(shapes_root(root), layout, **options)
    if layout == "voc":
        return VOCDetection(folder, SHAPES_SPLITS["voc"][split], transform, classes=read_class_list(folder / "VOC2007"))
    drop_empty = split == "train"
    return COCODetection(folder, SHAPES_SPLITS["coco"][split], transform, masks=masks, drop_empty=drop_empty)


LOADERS = {"pascal-voc": pascal_voc, "coco2017": coco2017, "shapes-detection": shapes_detection}
SPLITS = {"pascal-voc": tuple(VOC_SPLITS), "coco2017": COCO_SPLITS, "shapes-detection": ("train", "test")}
