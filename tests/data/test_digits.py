"""The embedded digits set: fixed stratified split, exact pixels, item format."""
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from mec_eval.data import build_dataset, dataset_spec
from mec_eval.data.digits import DigitsDataset, split_indices
from mec_eval.utils import UserError


@pytest.fixture(scope="module")
def splits():
    return {split: DigitsDataset(split) for split in ("train", "test")}


def test_split_covers_all_images_once(splits):
    train, test = splits["train"].indices, splits["test"].indices
    assert len(train) + len(test) == 1797
    assert len(test) == 540  # ceil(0.3 * 1797), sklearn's rounding
    assert set(train).isdisjoint(test)
    assert sorted(np.concatenate([train, test])) == list(range(1797))


def test_split_is_stratified(splits):
    total = Counter(load_digits().target.tolist())
    test = Counter(splits["test"].targets)
    for label, count in total.items():
        assert abs(test[label] - 0.3 * count) <= 1


def test_split_is_fixed():
    labels = load_digits().target
    first, second = split_indices(labels), split_indices(labels)
    assert np.array_equal(first["test"], second["test"])
    again = DigitsDataset("test")
    assert np.array_equal(again.images, DigitsDataset("test").images)
    # Pinned, so a change of seed or of sklearn's splitting would show up here.
    assert first["test"][:5].tolist() == [312, 1429, 893, 1375, 159]


def test_items_are_rgb_32_with_labels(splits):
    dataset = splits["train"]
    image, label = dataset[0]
    assert image.mode == "RGB" and image.size == (32, 32)
    assert dataset.classes == [str(d) for d in range(10)]
    assert set(dataset.targets) == set(range(10))
    assert label == dataset.targets[0]
    assert dataset_spec("digits").image_size == 32 and dataset_spec("digits").num_classes == 10


def test_pixels_are_the_upsampled_sklearn_digit(splits):
    dataset = splits["test"]
    index = 17
    raw = load_digits().images[dataset.indices[index]]
    assert load_digits().target[dataset.indices[index]] == dataset.targets[index]
    # Independent formulation: torch bilinear (half-pixel centres) on the 0..255-scaled digit.
    scaled = torch.as_tensor(np.round(raw * 255 / 16), dtype=torch.float32)[None, None]
    expected = torch.nn.functional.interpolate(scaled, size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    pixels = np.asarray(dataset[index][0]).astype(np.float32)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    assert np.abs(pixels[..., 0] - expected.numpy()).max() <= 1.0
    assert pixels.max() > 200  # really scaled to 0..255, not left at 0..16


def test_build_dataset_applies_transform_and_ignores_root():
    dataset = build_dataset("digits", "/no/such/folder", "train", transform=lambda im: np.asarray(im).shape)
    assert dataset[3][0] == (32, 32, 3)
    with pytest.raises(UserError, match="split"):
        build_dataset("digits", None, "val")
