"""Decoded-image cache: the same items as without it, no decoding after the fill, the memory limit, sharing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mec_eval.config import EvalDataConfig, from_dict
from mec_eval.data import build_dataset, transfer
from mec_eval.data.fixtures import write_imagefolder_fixture
from mec_eval.data.image_cache import MIB, DecodedImageCache, held_bytes
from mec_eval.data.transfer_fixtures import write_transfer_fixture
from mec_eval.data.transforms import train_transform
from mec_eval.training.sampling import SeededItems
from mec_eval.utils import UserError

SIDE = 256  # fixture images of 256 x 256 x 3 bytes: 5 fit in 1 MiB, 6 do not


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    """Flowers-102 with 3 classes x 4 images per split; the first train image made non-square (W != H)."""
    root = write_transfer_fixture("flowers102", tmp_path_factory.mktemp("data"), n_classes=3, per_class=4,
                                  image_size=SIDE)
    first = build_dataset("flowers102", str(root), "train").paths[0]
    Image.new("RGB", (SIDE, SIDE // 2 + 3), (200, 30, 90)).save(first, format="JPEG")
    return str(root)


@pytest.fixture
def decodes(monkeypatch):
    """Counts every decode of a transfer-set image."""
    calls = []
    original = transfer.load_rgb

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(transfer, "load_rgb", counting)
    return calls


def epochs_of(dataset, epochs: int = 2, seed: int = 3) -> list:
    """Every item of ``epochs`` epochs, each under torch's RNG seeded per (epoch, index) as the engine does."""
    items = SeededItems(dataset, seed)
    return [items[(epoch, index)] for epoch in range(epochs) for index in range(len(dataset))]


def assert_same_items(left: list, right: list) -> None:
    assert len(left) == len(right)
    for (image_a, target_a), (image_b, target_b) in zip(left, right):
        assert torch.equal(image_a, image_b)
        assert target_a == target_b


def test_cached_items_equal_decoded_items(flowers):
    plain = build_dataset("flowers102", flowers, "train", train_transform(64))
    cached = build_dataset("flowers102", flowers, "train", train_transform(64), cache_mb=64)
    assert isinstance(cached, DecodedImageCache) and len(cached.store) == len(plain) == 12
    assert_same_items(epochs_of(cached), epochs_of(plain))
    # Without a transform the item is the decoded image itself, including the non-square one.
    raw = build_dataset("flowers102", flowers, "train")
    assert np.array_equal(np.asarray(DecodedImageCache(raw, 64)[0][0]), np.asarray(raw[0][0]))
    assert np.asarray(raw[0][0]).shape == (SIDE // 2 + 3, SIDE, 3)
    # What the tasks read passes through to the wrapped dataset.
    assert cached.classes == plain.classes and cached.targets == plain.targets
    assert cached.split_source == plain.split_source


def test_epochs_after_the_fill_do_not_decode(flowers, decodes):
    cached = build_dataset("flowers102", flowers, "train", train_transform(64), cache_mb=64)
    assert len(decodes) == 12  # each image decoded once, while the dataset is built
    epochs_of(cached, epochs=2)
    assert len(decodes) == 12


def test_a_set_that_does_not_fit_keeps_a_prefix_and_says_so_once(flowers, decodes):
    messages = []
    plain = build_dataset("flowers102", flowers, "train", train_transform(64))
    decodes.clear()
    cached = DecodedImageCache(plain, limit_mb=1, log=messages.append, label="flowers102/train")
    # The first image is smaller (131 rows), so it and the next 4 full ones fit: 5 of 12.
    assert len(cached.store) == 5 and cached.store.nbytes <= MIB
    assert len(decodes) == 6  # the five kept and the one that did not fit
    assert len(messages) == 1 and "keeps 5 of 12 images" in messages[0] and "decoded_cache_mb=1" in messages[0]
    expected = epochs_of(plain, epochs=1)
    decodes.clear()
    assert_same_items(epochs_of(cached, epochs=1), expected)
    assert len(decodes) == 7  # an epoch decodes only the 7 not kept


def test_datasets_over_the_same_files_share_one_store_and_the_limit_is_per_process(flowers, decodes):
    train = build_dataset("flowers102", flowers, "train", train_transform(64), cache_mb=64)
    plain = build_dataset("flowers102", flowers, "train", None, cache_mb=64)
    assert plain.store is train.store and len(decodes) == 12
    held = held_bytes()
    assert held >= train.store.nbytes
    # Another split gets only what is left of the process's limit.
    limit_mb = int(np.ceil((held + 2 * SIDE * SIDE * 3) / MIB))
    val = build_dataset("flowers102", flowers, "val", None, cache_mb=limit_mb)
    assert held_bytes() <= limit_mb * MIB and 2 <= len(val.store) < len(val)
    del train, plain, val
    assert held_bytes() == 0  # the stores go with their last dataset


def test_a_fill_over_loader_workers_keeps_the_same_pixels_and_rng(flowers):
    raw = build_dataset("flowers102", flowers, "test")
    assert held_bytes() == 0  # no store left by another test: this one is filled by the workers
    state = torch.random.get_rng_state()
    parallel = DecodedImageCache(raw, 64, workers=2)
    assert torch.equal(torch.random.get_rng_state(), state)  # the fill draws nothing from torch's RNG
    assert len(parallel.store) == 12
    for index in range(len(raw)):
        assert np.array_equal(np.asarray(parallel[index][0]), np.asarray(raw[index][0]))


def test_loader_workers_read_the_cache(flowers):
    plain = build_dataset("flowers102", flowers, "train", train_transform(48))
    cached = build_dataset("flowers102", flowers, "train", train_transform(48), cache_mb=64)

    def batches(dataset):
        loader = DataLoader(SeededItems(dataset, 0), batch_size=4, num_workers=2,
                            sampler=[(0, i) for i in range(len(dataset))])
        return [images for images, _ in loader]

    for got, expected in zip(batches(cached), batches(plain)):
        assert torch.equal(got, expected)


def test_image_folder_sets_are_cached_too(tmp_path):
    root = write_imagefolder_fixture(tmp_path, n_classes=2, n_train=3, n_val=1)
    plain = build_dataset("imagefolder", str(root), "train", train_transform(24))
    cached = build_dataset("imagefolder", str(root), "train", train_transform(24), cache_mb=8)
    assert isinstance(cached, DecodedImageCache) and len(cached.store) == 6
    calls = []
    cached.dataset.loader = lambda path: calls.append(path)  # would break any item that decodes
    assert_same_items(epochs_of(cached), epochs_of(plain))
    assert calls == [] and cached.samples == plain.samples  # semi's subset files read .samples


def test_sets_without_files_to_decode_and_a_zero_limit_are_not_wrapped(flowers):
    assert not isinstance(build_dataset("digits", None, "train", cache_mb=64), DecodedImageCache)
    assert not isinstance(build_dataset("flowers102", flowers, "train", cache_mb=0), DecodedImageCache)


def test_the_limit_is_a_checked_config_field():
    assert EvalDataConfig().decoded_cache_mb == 0
    assert from_dict(EvalDataConfig, {"decoded_cache_mb": 512}).decoded_cache_mb == 512
    with pytest.raises(UserError, match="decoded_cache_mb"):
        from_dict(EvalDataConfig, {"decoded_cache_mb": -1})
