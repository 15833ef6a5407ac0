"""Two-view augmentation recipes (MEC App. C = BYOL / Barlow Twins recipe; App. B CIFAR variant).

``view_recipes`` is the one place the recipe's numbers live; the per-image torchvision pipeline
here and the batched tensor pipeline of :mod:`mec_eval.pretrain.batch_augment` both read them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from mec_eval.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # the official code uses them for every set
from mec_eval.utils import UserError


@dataclass
class ViewRecipe:
    """One view: crop 0.2-1, flip, colour jitter 0.4/0.4/0.2/0.1 (p=0.8), grayscale 0.2, blur, solarize."""
    size: int
    min_scale: float = 0.2
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 1.0
    solarize_p: float = 0.0

    @property
    def blur_kernel(self) -> int:
        """About 10 % of the image side, odd (BYOL: 23 px at 224)."""
        return max(3, int(round(self.size * 0.1)) | 1)


def view_recipes(kind: str, size: int, min_scale: float = 0.2) -> tuple[ViewRecipe, ViewRecipe]:
    """``byol``: asymmetric blur 1.0/0.1 and solarize 0/0.2 (App. C); ``cifar``: no blur, no solarize (App. B)."""
    if kind == "byol":
        return (ViewRecipe(size, min_scale, blur_p=1.0, solarize_p=0.0),
                ViewRecipe(size, min_scale, blur_p=0.1, solarize_p=0.2))
    if kind == "cifar":
        return ViewRecipe(size, min_scale, blur_p=0.0), ViewRecipe(size, min_scale, blur_p=0.0)
    raise UserError(f"unknown data.augment '{kind}' (choose byol or cifar)")


def view_transform(r: ViewRecipe) -> v2.Compose:
    """The per-image torchvision v2 pipeline of one recipe (PIL image -> normalised tensor)."""
    steps = [
        v2.ToImage(),
        v2.RandomResizedCrop(r.size, scale=(r.min_scale, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(r.brightness, r.contrast, r.saturation, r.hue)], p=r.jitter_p),
        v2.RandomGrayscale(p=r.gray_p),
    ]
    if r.blur_p > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(r.blur_kernel, sigma=(0.1, 2.0))], p=r.blur_p))
    if r.solarize_p > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=r.solarize_p))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


class TwoViews:
    """Callable returning ``[view1(img), view2(img)]`` for a PIL image."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, image):
        return [self.first(image), self.second(image)]


def build_two_view_transform(kind: str, image_size: int, min_scale: float = 0.2) -> TwoViews:
    return TwoViews(*(view_transform(r) for r in view_recipes(kind, image_size, min_scale)))
