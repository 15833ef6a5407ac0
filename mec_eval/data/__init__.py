"""Datasets by name: embedded ones (digits, shapes) and real ones read from a root folder.

``build_dataset(name, root, split, transform)`` returns a ``torch.utils.data.Dataset`` of
``(PIL RGB image, int label)`` items (``transform`` applied to the image, as in torchvision) with
``.classes`` and ``.targets`` (VOC 2007: multi-label, see :mod:`mec_eval.data.transfer`);
``dataset_spec(name)`` tells its native size, class count, official splits, metric and the on-disk
layout it expects. Unknown names, splits and bad paths are :class:`~mec_eval.utils.UserError`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from torch.utils.data import Dataset

from mec_eval.data import folders, transfer
from mec_eval.data.digits import DigitsDataset
from mec_eval.data.shapes import KINDS, ShapesDataset
from mec_eval.registry import Registry
from mec_eval.utils import UserError

METRICS = ("top1", "mean_per_class", "voc07_map")


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: native input size, classes (None when read from disk), where it lives.

    ``splits`` are the official ones only (a val split where the release has one); ``metric`` is
    how MEC Table 8 / ssl-transfer scores it; ``multilabel`` targets are rows of 1/0/-1 (VOC).
    """

    name: str
    image_size: int
    num_classes: int | None
    embedded: bool
    layout: str
    build: Callable[..., Dataset] = field(repr=False, compare=False)
    splits: tuple[str, ...] = ("train", "test")
    metric: str = "top1"
    multilabel: bool = False

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"dataset {self.name}: metric must be one of {METRICS}, got {self.metric!r}")


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

# MEC Table 8 column order; cifar10/cifar100 are registered above.
TRANSFER_DATASETS = ("food101", "cifar10", "cifar100", "sun397", "cars", "aircraft", "voc2007", "dtd", "pets",
                     "caltech101", "flowers102")
_WITH_VAL = ("train", "val", "test")
# name: (classes, splits, metric, one-line help); splits, metrics and class counts as in ssl-transfer.
_TRANSFER = {
    "food101": (101, ("train", "test"), "top1", "Food-101 (meta/train.json, meta/test.json)"),
    "sun397": (397, ("train", "test"), "top1", "SUN397, partition 01 (Training_01.txt / Testing_01.txt)"),
    "cars": (196, ("train", "test"), "top1", "Stanford Cars (devkit .mat annotations, test with labels)"),
    "aircraft": (100, _WITH_VAL, "mean_per_class", "FGVC-Aircraft 2013b, 100 variants (images_variant_*.txt)"),
    "voc2007": (20, _WITH_VAL, "voc07_map", "PASCAL VOC 2007 multi-label classification (ImageSets/Main)"),
    "dtd": (47, _WITH_VAL, "top1", "Describable Textures, split 1 (labels/{train,val,test}1.txt)"),
    "pets": (37, ("train", "test"), "mean_per_class",
             "Oxford-IIIT Pets, 37 breeds (annotations/trainval.txt, test.txt)"),
    "caltech101": (102, ("train", "test"), "mean_per_class",
                   "Caltech-101 incl. background; 30 train per class (seeded) or ssl-transfer's split files"),
    "flowers102": (102, _WITH_VAL, "mean_per_class", "Oxford Flowers-102 (setid.mat trnid / valid / tstid)"),
}
for _name, (_classes, _splits, _metric, _help) in _TRANSFER.items():
    _register(DatasetSpec(_name, 224, _classes, False, transfer.LAYOUTS[_name], transfer.LOADERS[_name],
                          splits=_splits, metric=_metric, multilabel=_name == "voc2007"), _help)


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


def build_dataset(name: str, root: str | None, split: str, transform=None) -> Dataset:
    """The ``split`` (one of ``dataset_spec(name).splits``; "test" is the val folder of ImageNet/ImageFolder).

    Embedded sets ignore ``root``; the others need it and say what layout they expect.
    """
    spec = dataset_spec(name)
    if split not in spec.splits:
        raise UserError(f"{name}: unknown split '{split}' (choose {' or '.join(spec.splits)})")
    return spec.build(root, split, transform)


__all__ = ["DATASETS", "METRICS", "TRANSFER_DATASETS", "DatasetSpec", "build_dataset", "dataset_spec"]
