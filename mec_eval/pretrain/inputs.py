"""Training inputs: which augmentation backend runs where, and the dataset + batch transform it needs.

- ``per-sample``: loader workers decode each image to a uint8 tensor (ImageFolder / ImageNet) and
  build both views with :class:`~mec_eval.pretrain.augment.TensorView` (CPU, in the workers).
- ``batch``, on-disk sets: workers decode and crop both views to uint8 at the view size
  (:class:`~mec_eval.pretrain.augment.TwoCrops`); the training device applies flip, colour, grey,
  blur and solarize to the whole batch (:class:`~mec_eval.pretrain.batch_augment.BatchTwoViews`).
- ``batch``, in-memory sets (embedded, CIFAR): the set is decoded once into one uint8 tensor and
  cropped on the device as well.
- ``auto`` is ``batch`` for every set and device: on CUDA it moves the colour work off the loader;
  on CPU it costs less per image than ``per-sample`` at 32-96 px and about the same at 224 px
  (``benchmarks/bench_data_path.py``). It depends on nothing a resumed run may change
  (``data.num_workers``, ``run.device``), so a resumed run keeps its augmentation stream.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from mec_eval.config import DataConfig
from mec_eval.data import build_dataset
from mec_eval.data.decode import decode_to_tensors
from mec_eval.pretrain.augment import TwoCrops, build_two_view_transform
from mec_eval.pretrain.batch_augment import BatchTwoViews
from mec_eval.utils import UserError

BACKENDS = ("auto", "batch", "per-sample")


class InMemoryImages(Dataset):
    """A dataset held as one uint8 tensor [N, 3, H, W]; items are (image tensor, label)."""

    def __init__(self, images: torch.Tensor, targets: list[int]):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.targets[index]


def materialise(dataset) -> InMemoryImages:
    """Decode every image once (they must share one size)."""
    images = [pil_to_tensor(dataset[i][0].convert("RGB")) for i in range(len(dataset))]
    if len({tuple(im.shape) for im in images}) != 1:
        raise UserError("data.augment_backend=batch needs images of one size; use data.augment_backend=per-sample")
    return InMemoryImages(torch.stack(images), list(dataset.targets))


def resolve_backend(data: DataConfig) -> str:
    """``batch`` or ``per-sample`` for ``data.augment_backend`` (see the module docstring)."""
    if data.augment_backend not in BACKENDS:
        raise UserError(f"unknown data.augment_backend '{data.augment_backend}' (choose {', '.join(BACKENDS)})")
    return "batch" if data.augment_backend == "auto" else data.augment_backend


def build_training_inputs(data: DataConfig, seed: int):
    """(dataset, make_views): the loader yields batches; ``make_views(batch)`` returns the two views
    (None when the loader's items already are the two views)."""
    backend = resolve_backend(data)
    if backend == "per-sample":
        dataset = build_dataset(data.name, data.root, "train",
                                transform=build_two_view_transform(data.augment, data.image_size, data.crop_min_scale))
        decode_to_tensors(dataset)
        return dataset, None
    dataset = build_dataset(data.name, data.root, "train")
    if decode_to_tensors(dataset):
        dataset.transform = TwoCrops(data.augment, data.image_size, data.crop_min_scale)
        return dataset, BatchTwoViews(data.augment, data.image_size, data.crop_min_scale, seed, cropped=True)
    return materialise(dataset), BatchTwoViews(data.augment, data.image_size, data.crop_min_scale, seed)
