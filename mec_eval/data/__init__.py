"""Datasets by name: embedded ones (digits, shapes) and real ones read from a root folder.

``build_dataset(name, root, split, transform)`` returns a ``torch.utils.data.Dataset`` of
``(PIL RGB image, int label)`` items (``transform`` applied to the image, as in torchvision) with
``.classes`` and ``.targets``; ``dataset_spec(name)`` tells its native size, class count and the
on-disk layout it expects. Unknown names and bad paths are :class:`~mec_eval.utils.UserError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from torch.utils.data import Dataset

from mec_eval.data import folders
from mec_eval.data.digits import DigitsDataset
from mec_eval.data.shapes import KINDS, ShapesDataset
from mec_eval.registry import Registry
from mec_eval.utils import UserError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: native input size, classes (None when read from disk), where it lives."""

    name: str
    image_size: int
    num_classes: int | None
    embedded: bool
    layout: str
    build: Callable[..., Dataset] = field(repr=False, compare=False)


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


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; a typo raises a UserError with the close matches."""
    return DATASETS.get(name)


def build_dataset(name: str, root: str | None, split: str, transform=None) -> Dataset:
    """The ``split`` ("train" or "test"; "test" is the val folder of ImageNet/ImageFolder) of ``name``.

    Embedded sets ignore ``root``; the others need it and say what layout they expect.
    """
    spec = dataset_spec(name)
    if split not in SPLITS:
        raise UserError(f"{name}: unknown split '{split}' (choose {' or '.join(SPLITS)})")
    return spec.build(root, split, transform)


__all__ = ["DATASETS", "DatasetSpec", "build_dataset", "dataset_spec"]
