"""Tiny copies of real datasets in their real on-disk formats, drawn with the shapes generator.

Tests and demos point the real loaders at these folders, so the code path that reads ImageNet or
CIFAR in production is the one under test. Images show shapes, so the labels are learnable.
Formats follow the originals: ImageNet's ``train/<wnid>/<wnid>_<n>.JPEG`` and pre-sorted
``val/<wnid>/ILSVRC2012_val_<n>.JPEG``; CIFAR's python pickles as described on
https://www.cs.toronto.edu/~kriz/cifar.html (Python 2 pickles of dicts with ``data`` as an
(N, 3072) uint8 array, channel-major rows).
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from mec_eval.data.folders import CIFAR_FIXTURE_MARKER
from mec_eval.data.shapes import KINDS, SPLIT_CODES, render_scene

# The first ten ImageNet-1k synsets (tench, goldfish, great white shark, ...), in sorted order.
WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475",
         "n01496331", "n01498041", "n01514668", "n01514859", "n01518878")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# CIFAR-100's 20 superclasses and their 5 classes each, as listed on the CIFAR page.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def shape_image(seed: int, split: str, index: int, label: int, image_size: int) -> Image.Image:
    """The fixture image for one (split, index): a shapes scene whose main kind is ``KINDS[label % 10]``."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    return render_scene(rng, image_size, KINDS[label % len(KINDS)])[0]


def write_imagenet_fixture(root, n_classes: int = 3, n_train: int = 4, n_val: int = 2,
                           image_size: int = 40, seed: int = 0) -> Path:
    """ImageNet layout with ``n_classes`` real synset ids, ``n_train``/``n_val`` JPEGs per class."""
    if not 1 <= n_classes <= len(WNIDS):
        raise ValueError(f"n_classes must be in 1..{len(WNIDS)}, got {n_classes}")
    root = Path(root)
    for label, wnid in enumerate(WNIDS[:n_classes]):
        train_dir, val_dir = root / "train" / wnid, root / "val" / wnid
        train_dir.mkdir(parents=True, exist_ok=True)
        val_dir.mkdir(parents=True, exist_ok=True)
        for j in range(n_train):
            image = shape_image(seed, "train", label * n_train + j, label, image_size)
            image.save(train_dir / f"{wnid}_{10026 + j}.JPEG", format="JPEG", quality=90)
        for j in range(n_val):
            number = label * n_val + j + 1  # the ILSVRC2012 val images are numbered from 1
            image = shape_image(seed, "test", number - 1, label, image_size)
            image.save(val_dir / f"ILSVRC2012_val_{number:08d}.JPEG", format="JPEG", quality=90)
    return root


def write_imagefolder_fixture(root, n_classes: int = 3, n_train: int = 4, n_val: int = 2,
                              image_size: int = 32, seed: int = 0, val_name: str = "val") -> Path:
    """``train/<kind>/*.png`` and ``<val_name>/<kind>/*.png``, classes named after the shape kinds."""
    if not 1 <= n_classes <= len(KINDS):
        raise ValueError(f"n_classes must be in 1..{len(KINDS)}, got {n_classes}")
    root = Path(root)
    for label, kind in enumerate(KINDS[:n_classes]):
        for split, folder_name, count in (("train", "train", n_train), ("test", val_name, n_val)):
            folder = root / folder_name / kind
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(count):
                shape_image(seed, split, label * count + j, label, image_size).save(folder / f"{kind}_{j:04d}.png")
    return root


class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler that writes ``bytes`` as Python 2 ``str``, as the CIFAR release was written.

    Read back with ``encoding="latin1"`` (torchvision) the keys are ``"data"``; with
    ``encoding="bytes"`` (the CIFAR page's snippet) they are ``b"data"``, exactly as for the real
    files. The standard library's C pickler cannot do this: it writes ``bytes`` as Python 3 bytes.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _dump(obj, path: Path) -> None:
    with open(path, "wb") as fh:
        _Py2Pickler(fh, protocol=2).dump(obj)


# Per kind: batch folder, train files, test file, label key, meta file (the release's names).
CIFAR_FORMATS = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{k}" for k in range(1, 6)], "test_batch", b"labels", "batches.meta"),
    "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels", "meta"),
}


def _cifar_names(kind: str) -> tuple[str, ...]:
    if kind == "cifar10":
        return CIFAR10_NAMES
    return tuple(sorted(name for group in CIFAR100_SUPERCLASSES.values() for name in group))


def _cifar_batch(kind: str, seed: int, split: str, indices: np.ndarray, description: str) -> dict:
    """One batch dict in the release's format; image ``i`` has label ``i % n_classes``."""
    names = _cifar_names(kind)
    labels = [int(i) % len(names) for i in indices]
    images = np.array([np.asarray(shape_image(seed, split, int(i), label, 32)) for i, label in zip(indices, labels)],
                      dtype=np.uint8).reshape(-1, 32, 32, 3)
    batch = {
        b"batch_label": description.encode(),
        CIFAR_FORMATS[kind][3]: labels,
        # Rows are channel-major: 1024 red, then 1024 green, then 1024 blue values.
        b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(-1, 3072)),
        b"filenames": [f"{names[label]}_s_{int(i):06d}.png".encode() for i, label in zip(indices, labels)],
    }
    if kind == "cifar100":
        coarse_of = {fine: c for c, group in enumerate(CIFAR100_SUPERCLASSES.values()) for fine in group}
        batch[b"coarse_labels"] = [coarse_of[names[label]] for label in labels]
    return batch


def write_cifar_fixture(root, kind: str = "cifar10", n_train: int = 20, n_test: int = 10, seed: int = 0) -> Path:
    """CIFAR-10/100 python batches under ``root``; returns ``root`` (what the loader takes).

    Image ``i`` of a split has label ``i % n_classes`` and the real class names. The folder is marked
    with ``folders.CIFAR_FIXTURE_MARKER`` so the loader skips the md5 check of the official release.
    """
    if kind not in CIFAR_FORMATS:
        raise ValueError(f"kind must be cifar10 or cifar100, got {kind!r}")
    folder_name, train_files, test_file, _, meta_file = CIFAR_FORMATS[kind]
    folder = Path(root) / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    train_chunks = np.array_split(np.arange(n_train), len(train_files))
    for number, (file, chunk) in enumerate(zip(train_files, train_chunks), start=1):
        _dump(_cifar_batch(kind, seed, "train", chunk, f"training batch {number} of {len(train_files)}"), folder / file)
    _dump(_cifar_batch(kind, seed, "test", np.arange(n_test), "testing batch 1 of 1"), folder / test_file)
    names = [name.encode() for name in _cifar_names(kind)]
    if kind == "cifar10":
        meta = {b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072}
    else:
        meta = {b"fine_label_names": names, b"coarse_label_names": [n.encode() for n in CIFAR100_SUPERCLASSES]}
    _dump(meta, folder / meta_file)
    (folder / CIFAR_FIXTURE_MARKER).write_text(
        "Written by mec_eval.data.fixtures.write_cifar_fixture: not the CIFAR release; the loader skips its md5 check.\n")
    return Path(root)
