"""Tiny copies of the 11 transfer datasets in their real extracted layouts, drawn with the shapes generator.

``write_transfer_fixture(name, parent)`` writes one dataset under ``parent`` the way its official
archive extracts (split lists, JSON, ``.mat`` files via ``scipy.io.savemat``, VOC annotation XML) and
returns the folder a user passes as ``data.root``. Class names are real ones from each release.

What is written, so tests can predict what the loaders read back:
- each official split gets ``per_class`` images per class (train/val/test for aircraft, dtd,
  flowers102 and voc2007; train/test otherwise); Caltech-101 gets ``30 + per_class`` images per
  class in one folder (its loader's default split then leaves ``per_class`` for test), CIFAR gets
  ``n_classes * per_class`` images per split with label ``i % 10`` (or ``% 100``);
- the ``k``-th listed image of a split has class ``k % n_classes``, except Food-101, whose JSON is
  grouped by class, and Caltech-101 (folders): there the images come class by class;
- VOC: image ``k``'s class ``k % n_classes`` is present; for odd ``k`` the next VOC class is marked
  difficult (0 in the files); every other class is absent (-1).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import scipy.io

from mec_eval.data import TRANSFER_DATASETS
from mec_eval.data.fixtures import shape_image, write_cifar_fixture
from mec_eval.data.transfer import CALTECH_TRAIN_PER_CLASS, VOC_CLASSES
from mec_eval.utils import atomic_write_bytes, atomic_write_text

# Real class names, the first few of each release (in the release's order where it has one).
FOOD101_CLASSES = ("apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare", "beet_salad")
SUN397_CLASSES = ("/a/abbey", "/a/airplane_cabin", "/b/bakery/shop", "/c/campsite", "/d/dining_room",
                  "/f/forest/broadleaf")
CARS_CLASSES = ("AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012",
                "Acura TL Type-S 2008", "Acura TSX Sedan 2012", "Acura Integra Type R 2001")
# Picked so that names with a slash and a space are among the first three.
AIRCRAFT_CLASSES = ("707-320", "F-16A/B", "Falcon 2000", "727-200", "A340-500", "Tu-154")
DTD_CLASSES = ("banded", "blotchy", "braided", "bubbly", "bumpy", "chequered")
# (breed, species 1 cat / 2 dog, breed id within species): the first six class ids of list.txt.
PETS_BREEDS = (("Abyssinian", 1, 1), ("american_bulldog", 2, 1), ("american_pit_bull_terrier", 2, 2),
               ("basset_hound", 2, 3), ("beagle", 2, 4), ("Bengal", 1, 2))
CALTECH101_CLASSES = ("BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion")

# The most classes a fixture can have: as many real names as listed above (Flowers' are label numbers).
_MAX_CLASSES = {"food101": len(FOOD101_CLASSES), "sun397": len(SUN397_CLASSES), "cars": len(CARS_CLASSES),
                "aircraft": len(AIRCRAFT_CLASSES), "voc2007": len(VOC_CLASSES), "dtd": len(DTD_CLASSES),
                "pets": len(PETS_BREEDS), "caltech101": len(CALTECH101_CLASSES), "flowers102": 102,
                "cifar10": 10, "cifar100": 100}
_WITH_VAL = ("train", "val", "test")


class _Drawer:
    """Draws and saves the fixture images of one dataset, numbering them across splits."""

    def __init__(self, seed: int, image_size: int):
        self.seed, self.image_size, self.count = seed, image_size, 0

    def save(self, path: Path, split: str, label: int) -> None:
        # The shapes generator knows only train/test streams; the running count keeps images distinct.
        image = shape_image(self.seed, "train" if split == "train" else "test", self.count, label, self.image_size)
        self.count += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="JPEG", quality=90)


def _lines(path: Path, lines: list[str]) -> None:
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def _savemat(path: Path, content: dict) -> None:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, content)
    atomic_write_bytes(path, buffer.getvalue())


def _split_labels(splits, n_classes: int, per_class: int):
    """(split, k, class) for every image, the k-th of a split having class k % n_classes."""
    return [(split, k, k % n_classes) for split in splits for k in range(n_classes * per_class)]


def _food101(parent: Path, n: int, per_class: int, draw: _Drawer) -> Path:
    base = parent / "food-101"
    classes = FOOD101_CLASSES[:n]
    for split in ("train", "test"):
        entries = {}
        for label, cls in enumerate(classes):
            entries[cls] = [f"{cls}/{1000000 + draw.count + j}" for j in range(per_class)]
            for entry in entries[cls]:
                draw.save(base / "images" / f"{entry}.jpg", split, label)
        atomic_write_text(base / "meta" / f"{split}.json", json.dumps(entries))
    _lines(base / "meta" / "classes.txt", list(classes))
    return base


def _sun397(parent: Path, n: int, per_class: int, draw: _Drawer) -> Path:
    base = parent / "SUN397"
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    listed = {"train": [], "test": []}
    for split, k, label in _split_labels(("train", "test"), n, per_class):
        stem = "".join(np.random.default_rng([draw.seed, draw.count]).choice(letters, 16))
        line = f"{SUN397_CLASSES[label]}/sun_{stem}.jpg"
        draw.save(base / line.lstrip("/"), split, label)
        listed[split].append(line)
    _lines(base / "ClassName.txt", list(SUN397_CLASSES[:n]))
    # The partitions ship in a separate archive (Partitions.zip), extracted beside SUN397/.
    _lines(parent / "Partitions" / "Training_01.txt", listed["train"])
    _lines(parent / "Partitions" / "Testing_01.txt", listed["test"])
    return base


def _cars_annotations(fnames: list[str], labels: list[int], size: int) -> np.ndarray:
    """A MATLAB struct array as in the devkit: bbox_x1..bbox_y2, class (1-based), fname."""
    fields = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
    records = np.empty((1, len(fnames)), dtype=[(f, "O") for f in fields])
    for j, (fname, label) in enumerate(zip(fnames, labels)):
        for field, value in zip(fields[:4], (1, 1, size, size)):
            records[0, j][field] = np.array([[value]], dtype=np.uint16)
        records[0, j]["class"] = np.array([[label + 1]], dtype=np.uint8)
        records[0, j]["fname"] = np.array([fname])
    return records


def _cars(parent: Path, n: int, per_class: int, draw: _Drawer) -> Path:
    base = parent / "stanford_cars"
    for split, folder, annos in (("train", "cars_train", base / "devkit" / "cars_train_annos.mat"),
                                 ("test", "cars_test", base / "cars_test_annos_withlabels.mat")):
        labels = [label for _, _, label in _split_labels((split,), n, per_class)]
        fnames = [f"{j + 1:05d}.jpg" for j in range(len(labels))]
        for fname, label in zip(fnames, labels):
            draw.save(base / folder / fname, split, label)
        _savemat(annos, {"annotations": _cars_annotations(fnames, labels, draw.image_size)})
    names = np.empty((1, n), dtype=object)
    names[0, :] = CARS_CLASSES[:n]
    _savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    return base


def _aircraft(parent: Path, n: int, per_class: int, draw: _Drawer) -> Path:
    data = parent / "fgvc-aircraft-2013b" / "data"
    listed = {split: [] for split in _WITH_VAL}
    for split, k, label in _split_labels(listed, n, per_class):
        image_id = f"{1025794 + 7 * draw.count:07d}"
        draw.save(data / "images" / f"{image_id}.jpg", split, label)
        listed[split].append(f"{image_id} {AIRCRAFT_CLASSES[label]}")
    for split, lines in listed.items():
        _lines(data / f"images_variant_{split}.txt", lines)
    _lines(data / "variants.txt", list(AIRCRAFT_CLASSES[:n]))
    return data.parent


def _voc_xml(image_id: str, size: int, present: str, difficult: str | None) -> str:
    objects = [(present, 0)] + ([(difficult, 1)] if difficult else [])
    body = "".join(
        f"<object><name>{cls}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{hard}</difficult>"
        f"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>{size}</xmax><ymax>{size}</ymax></bndbox></object>"
        for cls, hard in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>{size}</width><height>{size}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{body}</annotation>\n")


def _voc2007(parent: Path, n: int, per_class: int, draw: _Drawer) -> Path:
    base = parent / "VOCdevkit" / "VOC2007"
    main = base / "ImageSets" / "Main"
    ids = {split: [] for split in _WITH_VAL}
    files = np.full((len(_WITH_VAL) * n * per_class, len(VOC_CLASSES)), -1)  # file labels by image number
    for split, k, label in _split_labels(ids, n, per_class):
        number = draw.count
        image_id = f"{number + 1:06d}"
        files[number, label] = 1
        difficult = VOC_CLASSES[(label + 1) % len(VOC_CLASSES)] if k % 2 else None
        if difficult:
            files[number, VOC_CLASSES.index(difficult)] = 0
        draw.save(base / "JPEGImages" / f"{image_id}.jpg", split, label)
        atomic_write_text(base / "Annotations" / f"{image_id}.xml",
                          _voc_xml(image_id, draw.image_size, VOC_CLASSES[label], difficult))
        ids[split].append(image_id)
    ids["trainval"] = sorted(ids["train"] + ids["val"])
    for split, split_ids in ids.items():
        _lines(main / f"{split}.txt", split_ids)
        for column, cls in enumerate(VOC_CLASSES):
            # The devkit pads the label to two characters: "000005 -1", "000007  1".
            _lines(main / f"{cls}_{split}.txt", [f"{i} {files[int(i) - 1, column]:>2}" for i in split_ids])
    return base


def _dtd(parent: Path, n: int, per_class: int, draw: _Drawer) -> Path:
    base = parent / "dtd"
    listed = {split: [] for split in _WITH_VAL}
    for split, k, label in _split_labels(listed, n, per_class):
        relative = f"{DTD_CLASSES[label]}/{DTD_CLASSES[label]}_{draw.count + 1:04d}.jpg"
        draw.save(base / "images" / relative, split, label)
        listed[split].append(relative)
    for split, lines in listed.items():
        _lines(base / "labels" / f"{split}1.txt", lines)
    return base


def _pets(parent: Path, n: int, per_class: int, draw: _Drawer) -> Path:
    base = parent / "oxford-iiit-pet"
    listed = {"trainval": [], "test": []}
    for split, k, label in _split_labels(("train", "test"), n, per_class):
        breed, species, breed_id = PETS_BREEDS[label]
        stem = f"{breed}_{draw.count + 1}"
        draw.save(base / "images" / f"{stem}.jpg", split, label)
        listed["trainval" if split == "train" else "test"].append(f"{stem} {label + 1} {species} {breed_id}")
    header = ["#Image CLASS-ID SPECIES BREED ID", "#ID: 1:37 Class ids", "#SPECIES: 1:Cat 2:Dog",
              "#BREED ID: 1-25:Cat 1:12:Dog", "#All images with 1st letter as captial are cat images",
              "#images with small first letter are dog images"]
    _lines(base / "annotations" / "list.txt", header + sorted(listed["trainval"] + listed["test"]))
    for filename, lines in listed.items():
        _lines(base / "annotations" / f"{filename}.txt", lines)
    return base


def _caltech101(parent: Path, n: int, per_class: int, draw: _Drawer) -> Path:
    base = parent / "caltech101"
    for label, cls in enumerate(CALTECH101_CLASSES[:n]):
        for j in range(CALTECH_TRAIN_PER_CLASS + per_class):
            draw.save(base / "101_ObjectCategories" / cls / f"image_{j + 1:04d}.jpg", "train", label)
    return base


def _flowers102(parent: Path, n: int, per_class: int, draw: _Drawer) -> Path:
    base = parent / "flowers-102"
    labels, setid = [], {}
    for split, key in zip(_WITH_VAL, ("trnid", "valid", "tstid")):
        numbers = []
        for _, _, label in _split_labels((split,), n, per_class):
            numbers.append(draw.count + 1)
            labels.append(label + 1)
            draw.save(base / "jpg" / f"image_{numbers[-1]:05d}.jpg", split, label)
        setid[key] = np.array([numbers], dtype=np.uint16)
    _savemat(base / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    _savemat(base / "setid.mat", setid)
    return base


_WRITERS = {"food101": _food101, "sun397": _sun397, "cars": _cars, "aircraft": _aircraft, "voc2007": _voc2007,
            "dtd": _dtd, "pets": _pets, "caltech101": _caltech101, "flowers102": _flowers102}


def write_transfer_fixture(name: str, root, n_classes: int = 3, per_class: int = 4, image_size: int = 40,
                           seed: int = 0) -> Path:
    """Write dataset ``name`` under folder ``root`` as its archive extracts; return the dataset folder.

    CIFAR is delegated to :func:`~mec_eval.data.fixtures.write_cifar_fixture` (native 32 px, all
    10/100 class names, ``n_classes * per_class`` images per split); ``n_classes`` picks the first
    names of the other releases (see the module docstring for exactly what is written).
    """
    if name not in _MAX_CLASSES:
        raise ValueError(f"unknown transfer dataset {name!r} (known: {', '.join(TRANSFER_DATASETS)})")
    if not 1 <= n_classes <= _MAX_CLASSES[name]:
        raise ValueError(f"n_classes must be in 1..{_MAX_CLASSES[name]} for {name}, got {n_classes}")
    root = Path(root)
    if name in ("cifar10", "cifar100"):
        written = write_cifar_fixture(root, kind=name, n_train=n_classes * per_class, n_test=n_classes * per_class,
                                      seed=seed)
        return written / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    return _WRITERS[name](root, n_classes, per_class, _Drawer(seed, image_size))


def write_all_transfer_fixtures(parent, **kwargs) -> dict[str, Path]:
    """All 11 transfer datasets side by side under ``parent`` (a user's data folder); name -> dataset folder."""
    return {name: write_transfer_fixture(name, parent, **kwargs) for name in TRANSFER_DATASETS}
