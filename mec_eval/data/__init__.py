"""Datasets by name: embedded ones (digits, shapes) and real ones read from a root folder.

``build_dataset(name, root, split, transform)`` returns a ``torch.utils.data.Dataset`` whose items
follow the contract of the dataset's kind (:data:`ITEM_CONTRACTS`); every set registered today is a
classification set of ``(PIL RGB image, int label)`` items (``transform`` applied to the image, as in
torchvision) with ``.classes`` and ``.targets`` (VOC 2007: multi-label, see :mod:`mec_eval.data.transfer`).
``dataset_spec(name)`` tells its kind, native size, class count, official splits, metric and the
on-disk layout it expects. Names come from :mod:`mec_eval.vocabulary`. Unknown names, splits, bad
paths and a dataset of the wrong kind are :class:`~mec_eval.utils.UserError`.
"""
from __future__ import annotations

import difflib
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from mec_eval import vocabulary
from mec_eval.data import folders, transfer
from mec_eval.data.digits import DigitsDataset
from mec_eval.data.image_cache import DecodedImageCache, raw_source
from mec_eval.data.shapes import KINDS, ShapesDataset
from mec_eval.dist import is_main_process
from mec_eval.log import JsonLogger
from mec_eval.registry import Registry
from mec_eval.utils import UserError
from mec_eval.vocabulary import DATA_KINDS, TRANSFER_DATASETS, DataKind

# What one item of a dataset of each kind is; the tasks of a kind rely on exactly this (check_item tests it).
ITEM_CONTRACTS: dict[DataKind, str] = {
    "classification": (
        "(image, target): the image as `transform` returns it (a PIL RGB image without one); target an int "
        "class id, or for a multi-label set a row of C values 1 / 0 / -1 (present / absent / difficult)"),
    "detection": (
        "(image, target) as torchvision's detection models take them: image a float tensor [3, H, W] in [0, 1]; "
        "target a dict with 'boxes' float [N, 4] (x1, y1, x2, y2 in pixels, x1 <= x2, y1 <= y2), 'labels' "
        "int64 [N] (class ids from 1; 0 is the background) and optionally 'masks' uint8 [N, H, W] of 0 / 1"),
    "video": (
        "a sequence object with .name (str), .frames (T images, PIL or float tensors [3, H, W]) and "
        ".annotations (T per-frame dicts: boxes / masks / track ids as the video task reads them)"),
}


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: its kind, native input size, classes (None when read from disk), where it lives.

    ``kind`` says what an item is (:data:`ITEM_CONTRACTS`); ``splits`` are the official ones only (a
    val split where the release has one); ``metric`` (from the vocabulary) is how MEC Table 8 /
    ssl-transfer scores it; ``multilabel`` targets are rows of 1/0/-1 (VOC).
    """

    name: str
    image_size: int
    num_classes: int | None
    embedded: bool
    layout: str
    build: Callable[..., Dataset] = field(repr=False, compare=False)
    splits: tuple[str, ...] = ("train", "test")
    multilabel: bool = False
    kind: DataKind = "classification"

    def __post_init__(self):
        vocabulary.dataset(self.name)  # a registered name missing from the vocabulary is a bug: ValueError
        if self.kind not in DATA_KINDS:
            raise ValueError(f"dataset {self.name}: kind must be one of {DATA_KINDS}, got {self.kind!r}")

    @property
    def metric(self) -> str | None:
        return vocabulary.dataset(self.name).metric


DATASETS: Registry = Registry("dataset")


def _register(spec: DatasetSpec, help: str) -> None:
    DATASETS.register(spec.name, help=help)(spec)


# Every builder takes (root, split, transform); the embedded ones ignore root.
_register(
    DatasetSpec("digits", 32, 10, True, "embedded (scikit-learn load_digits); no files needed",
                lambda _root, split, transform: DigitsDataset(split, transform)),
    "scikit-learn's 1,797 handwritten 8x8 digits, upsampled to 32x32 RGB; fixed 70/30 split")
_register(
    DatasetSpec("shapes", 32, len(KINDS), True, "generated on the fly (mec_eval.data.shapes); no files needed",
                lambda _root, split, transform: ShapesDataset(split, transform=transform)),
    "synthetic coloured shapes on textured backgrounds, 10 kinds; 5,000 train / 2,000 test")
_register(
    DatasetSpec("imagenet", 224, None, False, folders.LAYOUTS["imagenet"], folders.imagenet),
    "ImageNet-1k from root/train and root/val (WordNet-id class folders)")
_register(
    DatasetSpec("imagefolder", 224, None, False, folders.LAYOUTS["imagefolder"], folders.imagefolder),
    "any root/train/<class> + root/val/<class> (or test/<class>) image tree")
_register(
    DatasetSpec("cifar10", 32, 10, False, folders.LAYOUTS["cifar10"], partial(folders.cifar, "cifar10")),
    "CIFAR-10 python batches (torchvision format; not downloaded)")
_register(
    DatasetSpec("cifar100", 32, 100, False, folders.LAYOUTS["cifar100"], partial(folders.cifar, "cifar100")),
    "CIFAR-100 python batches (torchvision format; not downloaded)")

# The MEC Table 8 sets other than cifar10/cifar100 (registered above); their metrics are in the vocabulary.
_WITH_VAL = ("train", "val", "test")
# name: (classes, splits, one-line help); splits and class counts as in ssl-transfer.
_TRANSFER = {
    "food101": (101, ("train", "test"), "Food-101 (meta/train.json, meta/test.json)"),
    "sun397": (397, ("train", "test"), "SUN397, partition 01 (Training_01.txt / Testing_01.txt)"),
    "cars": (196, ("train", "test"), "Stanford Cars (devkit .mat annotations, test with labels)"),
    "aircraft": (100, _WITH_VAL, "FGVC-Aircraft 2013b, 100 variants (images_variant_*.txt)"),
    "voc2007": (20, _WITH_VAL, "PASCAL VOC 2007 multi-label classification (ImageSets/Main)"),
    "dtd": (47, _WITH_VAL, "Describable Textures, split 1 (labels/{train,val,test}1.txt)"),
    "pets": (37, ("train", "test"), "Oxford-IIIT Pets, 37 breeds (annotations/trainval.txt, test.txt)"),
    "caltech101": (102, ("train", "test"),
                   "Caltech-101 incl. background; 30 train per class (seeded) or ssl-transfer's split files"),
    "flowers102": (102, _WITH_VAL, "Oxford Flowers-102 (setid.mat trnid / valid / tstid)"),
}
for _name, (_classes, _splits, _help) in _TRANSFER.items():
    _register(DatasetSpec(_name, 224, _classes, False, transfer.LAYOUTS[_name], transfer.LOADERS[_name],
                          splits=_splits, multilabel=_name == "voc2007"), _help)

# Detection sets (MEC Table 3): items per ITEM_CONTRACTS["detection"]; options beyond (root, split,
# transform), such as the COCO layout of shapes-detection or masks=False, via detection.LOADERS[name].
from mec_eval.data import detection  # noqa: E402  (kept with its registrations)

_register(DatasetSpec("pascal-voc", 800, 20, False, detection.LAYOUTS["pascal-voc"], detection.pascal_voc,
                      splits=detection.SPLITS["pascal-voc"], kind="detection"),
          "PASCAL VOC detection from a VOCdevkit folder: trainval07, trainval0712 (07+12) and test07 image sets")
_register(DatasetSpec("coco2017", 800, 80, False, detection.LAYOUTS["coco2017"], detection.coco2017,
                      splits=detection.SPLITS["coco2017"], kind="detection"),
          "COCO 2017 instances (boxes and masks) from annotations/instances_{train,val}2017.json")
_register(DatasetSpec("shapes-detection", 160, len(detection.SHAPE_CLASSES), True,
                      "generated on first use (mec_eval.data.shapes_detection) in the VOC layout (or COCO's via "
                      "detection.LOADERS); root: where to write it (default ~/.cache/mec-eval)",
                      detection.shapes_detection, splits=detection.SPLITS["shapes-detection"], kind="detection"),
          "synthetic shapes (5 kinds, 1-4 per image, occlusions, difficult flags) for detection and masks")

# Multi-object tracking sets (UniTrack MOT / MOTS / PoseTrack): items are video sequences.
from mec_eval.data import mot as _mot, posetrack as _posetrack  # noqa: E402  (kept with its registrations)

_register(DatasetSpec("mot16", 1088, None, False, _mot.MOT_LAYOUT, _mot.build_mot16, splits=("train",), kind="video"),
          "MOT16 train sequences with gt and given detections (det/det.txt or a detection folder)")
_register(DatasetSpec("mots20", 1088, None, False, _mot.MOTS_LAYOUT, _mot.build_mots20, splits=("train",),
                      kind="video"), "MOTS20 train sequences, masks in the MOTS RLE txt format")
_register(DatasetSpec("posetrack2018", 1088, None, False, _posetrack.POSETRACK_LAYOUT, _posetrack.build_posetrack2018,
                      splits=("val",), kind="video"), "PoseTrack 2018 val JSON (17 keypoints, track ids)")

# Single-object tracking / VOS sets (UniTrack SOT, VOS): items are sequences with .name, .frames, .annotations.
# The SOT / VOS adapters call otb.load_otb / davis.load_davis (sequence subsets) and write shapes-video with
# otb.write_shapes_otb / davis.write_shapes_davis; build_dataset gives the whole set.
from mec_eval.data import davis as _davis, otb as _otb, shapes_video as _shapes_video  # noqa: E402

_register(DatasetSpec("otb2015", 520, None, False, _otb.LAYOUT, lambda root, _split, _t: _otb.load_otb(root),
                      splits=("test",), kind="video"),
          "OTB-2015 (OTB-100) sequences, groundtruth_rect.txt boxes (Jogging / Skating2: one sequence per target)")
_register(DatasetSpec("davis2017", 480, None, False, _davis.LAYOUT,
                      lambda root, split, _t: _davis.load_davis(root, split), splits=("val", "train"), kind="video"),
          "DAVIS-2017 semi-supervised VOS (480p frames, palette PNG object ids, ImageSets/2017 lists)")
_register(DatasetSpec("shapes-video", 128, None, True, "generated on the fly (mec_eval.data.shapes_video); no files "
                      "needed", lambda _root, _split, _t: _shapes_video.make_videos(8, 0),
                      splits=("test",), kind="video"),
          "synthetic videos of 3 moving, occluding shapes (8 videos of 24 frames, 96x128; boxes, masks, keypoints)")


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; a typo raises a UserError with the close matches.

    The name is only compared with the registry (never used as a path); a long or odd one is shown
    shortened and escaped, so the error stays one line.
    """
    if not isinstance(name, str) or name not in DATASETS:
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        close = difflib.get_close_matches(str(name)[:100], DATASETS.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown dataset {shown}{hint} (known: {', '.join(DATASETS.names())}; "
                        "see `mec-eval list datasets`)")
    return DATASETS.get(name)


def require_kind(spec: DatasetSpec, kind: DataKind) -> DatasetSpec:
    """``spec`` if its items are of ``kind``; else a UserError naming the datasets of that kind.

    A task calls it with the kind it reads (``vocabulary.task(name).kind``) before loading anything.
    """
    if spec.kind != kind:
        fitting = [name for name in DATASETS.names() if DATASETS.get(name).kind == kind]
        raise UserError(f"dataset {spec.name} is a {spec.kind} dataset, but this task reads {kind} data "
                        f"(choose {', '.join(fitting) or f'a {kind} dataset; none is registered yet'})")
    return spec


def build_dataset(name: str, root: str | None, split: str, transform=None,
                  kind: DataKind = "classification", cache_mb: int = 0, workers: int = 0) -> Dataset:
    """The ``split`` (one of ``dataset_spec(name).splits``; "test" is the val folder of ImageNet/ImageFolder).

    ``kind`` is the item contract the caller reads (:data:`ITEM_CONTRACTS`); a dataset of another kind
    is a UserError. Embedded sets ignore ``root``; the others need it and say what layout they expect.
    ``cache_mb`` > 0 keeps the split's decoded images in memory (:class:`~mec_eval.data.image_cache.
    DecodedImageCache`, at most ``cache_mb`` MiB for all such sets of the process, decoded now by
    ``workers`` loader processes); sets without image files to decode (CIFAR, embedded) are returned as is.
    """
    spec = require_kind(dataset_spec(name), kind)
    if split not in spec.splits:
        raise UserError(f"{name}: unknown split '{split}' (choose {' or '.join(spec.splits)})")
    dataset = spec.build(root, split, transform)
    if cache_mb <= 0 or raw_source(dataset) is None:
        return dataset
    log = JsonLogger(None).info if is_main_process() else (lambda _message: None)
    return DecodedImageCache(dataset, cache_mb, workers, label=f"{name}/{split}", log=log)


def _shape(value) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _detection_problem(item: Any) -> str | None:
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict)):
        return "a detection item is a pair (image tensor, target dict)"
    image, target = item
    if _shape(image) is None or image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
        return f"the image is not a float tensor [3, H, W] (got {_shape(image) or type(image).__name__})"
    boxes, labels, masks = target.get("boxes"), target.get("labels"), target.get("masks")
    if _shape(boxes) is None or boxes.ndim != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
        return f"target['boxes'] is not a float tensor [N, 4] (got {_shape(boxes) or type(boxes).__name__})"
    if _shape(labels) is None:
        return "target['labels'] is missing or not a tensor"
    if _shape(labels) != (len(boxes),) or labels.dtype != torch.int64:
        return f"target['labels'] is not an int64 tensor [{len(boxes)}] (got {_shape(labels)}, {labels.dtype})"
    if bool((boxes[:, 2:] < boxes[:, :2]).any()):
        return "target['boxes'] are not x1, y1, x2, y2 with x1 <= x2 and y1 <= y2"
    if masks is not None and (_shape(masks) != (len(boxes), *image.shape[1:]) or masks.dtype != torch.uint8):
        return f"target['masks'] is not a uint8 tensor [{len(boxes)}, H, W] matching the image (got {_shape(masks)})"
    return None


def _video_problem(item: Any) -> str | None:
    frames, annotations = getattr(item, "frames", None), getattr(item, "annotations", None)
    if not isinstance(getattr(item, "name", None), str):
        return "a video item has a str .name"
    if not isinstance(frames, Sequence) or not isinstance(annotations, Sequence) or not frames:
        return "a video item has sequences .frames (not empty) and .annotations"
    if len(frames) != len(annotations):
        return f"{len(frames)} frames but {len(annotations)} per-frame annotations"
    return None


def _classification_problem(item: Any) -> str | None:
    if not (isinstance(item, tuple) and len(item) == 2):
        return "a classification item is a pair (image, target)"
    target = item[1]
    if isinstance(target, bool) or not isinstance(target, (numbers.Integral, Sequence, np.ndarray, torch.Tensor)):
        return f"the target is {type(target).__name__}, not an int class id or a multi-hot row"
    return None


_PROBLEMS = {"classification": _classification_problem, "detection": _detection_problem, "video": _video_problem}


def check_item(kind: DataKind, item: Any) -> None:
    """Raise ValueError when ``item`` breaks the :data:`ITEM_CONTRACTS` of ``kind`` (a dataset bug)."""
    problem = _PROBLEMS[kind](item)
    if problem:
        raise ValueError(f"not a {kind} item: {problem}; expected {ITEM_CONTRACTS[kind]}")


__all__ = ["DATASETS", "ITEM_CONTRACTS", "TRANSFER_DATASETS", "DataKind", "DatasetSpec", "build_dataset",
           "check_item", "dataset_spec", "require_kind"]
