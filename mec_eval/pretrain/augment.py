"""Two-view augmentation pipelines (MEC App. C = BYOL / Barlow Twins recipe; App. B CIFAR variant)."""
from __future__ import annotations

import torch
from torchvision.transforms import v2

from mec_eval.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # the official code uses them for every set
from mec_eval.utils import UserError


def _blur_kernel(image_size: int) -> int:
    """About 10 % of the image side, odd (BYOL: 23 px at 224)."""
    k = max(3, int(round(image_size * 0.1)))
    return k if k % 2 == 1 else k + 1


def view_transform(image_size: int, blur_p: float, solarize_p: float, min_scale: float = 0.2) -> v2.Compose:
    """One view: crop 0.2-1, flip, colour jitter 0.4/0.4/0.2/0.1 (p=0.8), grayscale 0.2, blur, solarize."""
    steps = [
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, scale=(min_scale, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if blur_p > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(_blur_kernel(image_size), sigma=(0.1, 2.0))], p=blur_p))
    if solarize_p > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=solarize_p))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


class TwoViews:
    """Callable returning ``[view1(img), view2(img)]`` for a PIL image."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, image):
        return [self.first(image), self.second(image)]


def build_two_view_transform(kind: str, image_size: int, min_scale: float = 0.2) -> TwoViews:
    """``byol``: asymmetric blur 1.0/0.1 and solarize 0/0.2 (App. C); ``cifar``: no blur, no solarize (App. B)."""
    if kind == "byol":
        return TwoViews(view_transform(image_size, 1.0, 0.0, min_scale), view_transform(image_size, 0.1, 0.2, min_scale))
    if kind == "cifar":
        same = view_transform(image_size, 0.0, 0.0, min_scale)
        return TwoViews(same, same)
    raise UserError(f"unknown data.augment '{kind}' (choose byol or cifar)")
