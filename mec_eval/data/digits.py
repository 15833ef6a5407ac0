"""scikit-learn's handwritten digits as a tiny embedded image-classification set (no download).

Source: ``sklearn.datasets.load_digits``, the UCI "Optical Recognition of Handwritten Digits" test
set: 1,797 real 8x8 images with values 0..16. They are rescaled to 0..255, upsampled bilinearly to
32x32 (the CIFAR input size the small backbones expect) and made RGB. The train/test split is fixed
and stratified (30 % test, ``random_state=0``), so every machine sees the same split.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from mec_eval.utils import UserError

IMAGE_SIZE = 32
TEST_FRACTION = 0.3
SPLIT_SEED = 0


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Indices into ``load_digits()`` of the fixed stratified train and test splits."""
    train, test = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION,
                                   random_state=SPLIT_SEED, stratify=labels)
    return {"train": train, "test": test}


def upsample(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """One 8x8 digit (values 0..16) as a (size, size) uint8 array, scaled to 0..255 and bilinearly upsampled."""
    grey = np.round(image * (255.0 / 16.0)).astype(np.uint8)
    return np.asarray(Image.fromarray(grey).resize((size, size), Image.BILINEAR))


class DigitsDataset(Dataset):
    """The fixed train or test split of the digits; items are ``(PIL RGB 32x32 image, label)``."""

    def __init__(self, split: str = "train", transform=None):
        if split not in ("train", "test"):
            raise UserError(f"digits: unknown split '{split}' (choose train or test)")
        bunch = load_digits()
        self.classes = [str(d) for d in range(10)]
        self.indices = split_indices(bunch.target)[split]
        self.images = np.stack([upsample(bunch.images[i]) for i in self.indices])
        self.targets = [int(bunch.target[i]) for i in self.indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index]).convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]
