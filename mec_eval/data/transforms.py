"""Deterministic evaluation transforms (resize, centre crop, ImageNet normalisation)."""
from __future__ import annotations

import torch
from torchvision.transforms import v2

from mec_eval.utils import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_transform(image_size: int, resize_ratio: float = 256 / 224,
                   interpolation: v2.InterpolationMode = v2.InterpolationMode.BILINEAR) -> v2.Compose:
    """Resize the short side to ``image_size * resize_ratio`` and centre-crop ``image_size``.

    The ratio 256/224 is the standard ImageNet test transform (MEC App. C); embedded 32 px sets use
    ratio 1 (no border lost).
    """
    resize = int(round(image_size * resize_ratio))
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(resize, interpolation=interpolation, antialias=True),
        v2.CenterCrop(image_size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


INTERPOLATIONS = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}


def interpolation_mode(name: str) -> v2.InterpolationMode:
    """The torchvision interpolation for a config name ("bilinear" or "bicubic")."""
    if name not in INTERPOLATIONS:
        raise UserError(f"unknown data.interpolation '{name}' (choose {' or '.join(INTERPOLATIONS)})")
    return INTERPOLATIONS[name]


def train_transform(image_size: int, min_scale: float = 0.08,
                    interpolation: v2.InterpolationMode = v2.InterpolationMode.BILINEAR) -> v2.Compose:
    """RandomResizedCrop + horizontal flip + ImageNet normalisation: the supervised training transform
    of the linear probe (MEC main_lincls.py), semi-supervised fine-tuning and ssl-transfer fine-tuning."""
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, scale=(min_scale, 1.0), interpolation=interpolation, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
