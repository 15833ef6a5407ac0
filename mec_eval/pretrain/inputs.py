"""Training inputs: per-sample torchvision views in the loader, or in-memory uint8 batches + batched views."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from mec_eval.config import DataConfig
from mec_eval.data import build_dataset, dataset_spec
from mec_eval.pretrain.augment import build_two_view_transform
from mec_eval.pretrain.batch_augment import BatchTwoViews
from mec_eval.utils import UserError


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
    if data.augment_backend == "auto":
        return "batch" if dataset_spec(data.name).embedded else "per-sample"
    if data.augment_backend not in ("batch", "per-sample"):
        raise UserError(f"unknown data.augment_backend '{data.augment_backend}' (choose auto, batch, per-sample)")
    return data.augment_backend


def build_training_inputs(data: DataConfig, seed: int):
    """(dataset, make_views): the loader yields batches; ``make_views(batch)`` returns the two views."""
    backend = resolve_backend(data)
    if backend == "batch":
        dataset = materialise(build_dataset(data.name, data.root, "train"))
        return dataset, BatchTwoViews(data.augment, data.image_size, data.crop_min_scale, seed)
    transform = build_two_view_transform(data.augment, data.image_size, data.crop_min_scale)
    return build_dataset(data.name, data.root, "train", transform=transform), None
