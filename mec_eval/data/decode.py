"""Decoding image files straight to uint8 tensors, for the pre-training loader.

``torchvision.io.decode_image`` (libjpeg-turbo / libpng / libwebp) turns the file's bytes into a
uint8 [3, H, W] tensor without a PIL image in between; files it cannot read go through PIL
(:func:`~mec_eval.data.folders.load_rgb`), which also turns a corrupt file into the one-line
:class:`~mec_eval.data.folders.UnreadableImage`. Evaluation keeps reading PIL images through
``load_rgb``: its resize and crop transforms are defined on them.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import ImageFolder
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import pil_to_tensor

from mec_eval.data.folders import load_rgb


def decode_rgb(path: str | Path) -> torch.Tensor:
    """The image at ``path`` as a uint8 [3, H, W] RGB tensor (PIL for formats torchvision cannot decode)."""
    try:
        data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
        return decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError, OSError):
        # Unsupported format, a decoder error, or an unreadable file: PIL decodes what it can and
        # names the file in a one-line error otherwise.
        return pil_to_tensor(load_rgb(path))


def decode_to_tensors(dataset) -> bool:
    """Make an ImageFolder-style ``dataset`` (a fresh object built for pre-training) yield uint8 tensors.

    Returns whether it did: datasets that hold their images in memory (CIFAR) keep PIL items.
    """
    if isinstance(dataset, ImageFolder):
        dataset.loader = decode_rgb
        return True
    return False
