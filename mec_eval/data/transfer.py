"""The fine-grained transfer datasets of MEC Table 8 (linusericsson/ssl-transfer), read as extracted.

One small reader per dataset turns its official split files into a :class:`TransferDataset` of image
paths and targets. torchvision's classes are not used: Flowers-102 checks md5 sums (a fixture cannot
pass), DTD and Caltech-101 expect torchvision's own download nesting, Caltech-101 drops the
background class, Pets re-capitalises the breed names and SUN397 ignores the official partitions.
Every bad path or file becomes one :class:`~mec_eval.utils.UserError` naming the dataset, what was
tried and the expected layout; each image a split file lists is checked to exist when the split is
built, so a partial copy fails at once and names the file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.io
import torch
from PIL import Image
from torch.utils.data import Dataset

from mec_eval.data.folders import load_rgb, root_dir
from mec_eval.utils import UserError

LAYOUTS = {
    "food101": "food-101/\n  images/<class>/<id>.jpg\n  meta/classes.txt  meta/train.json  meta/test.json",
    "sun397": "SUN397/\n  ClassName.txt\n  <letter>/<class path>/sun_*.jpg\n"
              "  Training_01.txt  Testing_01.txt  (in SUN397/, SUN397/Partitions/, or beside SUN397/)",
    "cars": "stanford_cars/  (any folder name)\n  cars_train/*.jpg  cars_test/*.jpg\n"
            "  devkit/cars_meta.mat  devkit/cars_train_annos.mat\n"
            "  cars_test_annos_withlabels.mat  (here or in devkit/)",
    "aircraft": "fgvc-aircraft-2013b/\n  data/images/<id>.jpg\n  data/variants.txt\n"
                "  data/images_variant_train.txt  images_variant_val.txt  images_variant_test.txt",
    "voc2007": "VOCdevkit/\n  VOC2007/\n    JPEGImages/<id>.jpg\n    ImageSets/Main/{train,val,test}.txt\n"
               "    ImageSets/Main/<class>_{train,val,test}.txt",
    "dtd": "dtd/\n  images/<class>/<name>.jpg\n  labels/train1.txt  labels/val1.txt  labels/test1.txt",
    "pets": "oxford-iiit-pet/\n  images/<Breed_name>_<n>.jpg\n  annotations/list.txt  annotations/trainval.txt"
            "  annotations/test.txt",
    "caltech101": "caltech101/\n  101_ObjectCategories/<class>/image_<nnnn>.jpg\n"
                  "  caltech101-splits/train.txt  test.txt  (optional; here or beside caltech101/)",
    "flowers102": "flowers-102/  (any folder name)\n  jpg/image_<nnnnn>.jpg\n  imagelabels.mat  setid.mat",
}
# The 20 PASCAL VOC classes in the devkit's order (VOCdevkit/VOCcode/VOCinit.m).
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
# VOC per-class files: 1 present, -1 absent, 0 "difficult" (present but hard); targets keep all three.
VOC_LABELS = {"1": 1, "-1": 0, "0": -1}
CALTECH_TRAIN_PER_CLASS = 30
CALTECH_SEED = 0


def fail(name: str, problem: str) -> UserError:
    """The one error for a bad dataset path: what went wrong, then the expected layout on one line."""
    return UserError(f"{name}: {problem}; expected layout: {' '.join(LAYOUTS[name].split())}")


class TransferDataset(Dataset):
    """Listed images with their targets: yields ``(transform(PIL RGB image), target)``.

    ``targets`` is a list of class indices, or for multi-label VOC an int8 array [N, classes] whose
    rows come back as tensors. ``split_source`` records which split file (or rule) chose the images.
    """

    def __init__(self, paths: list[Path], targets, classes: list[str], split_source: str, transform=None):
        self.paths = [str(p) for p in paths]
        self.targets = targets
        self.classes = classes
        self.split_source = split_source
        self.transform = transform
        self.multilabel = isinstance(targets, np.ndarray)

    def __len__(self) -> int:
        return len(self.paths)

    # Decoding and transforming are separate steps so a decoded-image cache
    # (mec_eval.data.image_cache) can keep the decoded pixels and still run the random transform.
    @property
    def image_paths(self) -> list[str]:
        return self.paths

    def load_image(self, index: int) -> Image.Image:
        """Image ``index`` decoded, before any transform."""
        return load_rgb(self.paths[index])

    def make_item(self, index: int, image: Image.Image):
        """The item of ``index`` from its decoded image: the transform applied, the target attached."""
        if self.transform is not None:
            image = self.transform(image)
        target = torch.from_numpy(self.targets[index]) if self.multilabel else self.targets[index]
        return image, target

    def __getitem__(self, index: int):
        return self.make_item(index, self.load_image(index))


def _dataset_dir(name: str, root, subdirs: tuple[str, ...], marker: str) -> Path:
    """The dataset folder: ``root`` itself or ``root/<subdir>``, the first that holds ``marker``."""
    base = root_dir(name, root, fail)
    candidates = [base] + [base / s for s in subdirs]
    for folder in candidates:
        if (folder / marker).exists():
            return folder
    raise fail(name, f"no {marker} in {' or '.join(str(c) for c in candidates)}")


def _first_file(name: str, folders: list[Path], filename: str) -> Path:
    for folder in folders:
        if (folder / filename).is_file():
            return folder / filename
    raise fail(name, f"missing {filename} (looked in {', '.join(str(f) for f in folders)})")


def _read_text(name: str, path: Path) -> str:
    if not path.is_file():
        raise fail(name, f"missing {path}")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise fail(name, f"cannot read {path} ({err})") from None


def _parsed(name: str, path: Path, parse: Callable[[str], object]) -> list:
    """Each line of ``path`` through ``parse``; a line it rejects is an error naming file and line.

    Blank lines and ``#`` comments (the header of Pets' ``list.txt``) are skipped.
    """
    rows = []
    for number, line in enumerate(_read_text(name, path).splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            rows.append(parse(line.strip()))
        except KeyError as err:
            raise fail(name, f"{path} line {number} ({line.strip()!r}) names unknown {err}") from None
        except (ValueError, IndexError) as err:
            raise fail(name, f"{path} line {number} ({line.strip()!r}) is malformed ({err})") from None
    return rows


def _loadmat(name: str, path: Path, key: str) -> np.ndarray:
    """``key`` of a MATLAB file, squeezed to at least 1-d."""
    if not path.is_file():
        raise fail(name, f"missing {path}")
    try:
        content = scipy.io.loadmat(path, squeeze_me=True)
    # scipy raises NotImplementedError for MATLAB v7.3 (HDF5) files, which the official releases are not.
    except (ValueError, TypeError, OSError, NotImplementedError) as err:
        raise fail(name, f"{path} is not a readable MATLAB file ({err})") from None
    if key not in content:
        raise fail(name, f"{path} has no '{key}' entry")
    return np.atleast_1d(content[key])


def _checked(name: str, paths: list[Path], listing) -> list[Path]:
    """``paths`` if every image exists; otherwise an error naming the first missing one."""
    for path in paths:
        if not path.is_file():
            raise fail(name, f"image {path} listed in {listing} is missing")
    return paths


def _index(classes: list[str]) -> dict[str, int]:
    return {c: i for i, c in enumerate(classes)}


def _class_dirs(name: str, folder: Path) -> list[str]:
    if not folder.is_dir():
        raise fail(name, f"no folder {folder}")
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    if not classes:
        raise fail(name, f"no class folders in {folder}")
    return classes


def food101(root, split: str, transform=None) -> TransferDataset:
    """Food-101: classes in ``meta/classes.txt`` order; ``meta/<split>.json`` maps class -> ["class/id", ...]."""
    name = "food101"
    base = _dataset_dir(name, root, ("food-101",), "meta/classes.txt")
    classes = _parsed(name, base / "meta" / "classes.txt", str)
    listing = base / "meta" / f"{split}.json"
    try:
        entries = json.loads(_read_text(name, listing))
    except json.JSONDecodeError as err:
        raise fail(name, f"{listing} is not valid JSON ({err})") from None
    if not isinstance(entries, dict):
        raise fail(name, f"{listing} is not a JSON object of class -> image list")
    index, paths, targets = _index(classes), [], []
    for cls, items in entries.items():
        if cls not in index:
            raise fail(name, f"{listing} lists class '{cls}', which meta/classes.txt lacks")
        paths += [base / "images" / f"{item}.jpg" for item in items]
        targets += [index[cls]] * len(items)
    return TransferDataset(_checked(name, paths, listing), targets, classes, str(listing), transform)


def sun397(root, split: str, transform=None) -> TransferDataset:
    """SUN397, partition 01 (as ssl-transfer): classes follow ``ClassName.txt`` without the letter prefix.

    ``/a/abbey`` becomes "abbey" and ``/b/bakery/shop`` "bakery/shop". The partition files come in
    a separate archive, so they are looked for in SUN397/, SUN397/Partitions/ and beside SUN397/.
    """
    name = "sun397"
    base = _dataset_dir(name, root, ("SUN397",), "ClassName.txt")

    def class_path(line: str) -> str:
        if not line.startswith("/") or line.count("/") < 2:
            raise ValueError("expected a class path like /a/abbey")
        return line

    class_paths = _parsed(name, base / "ClassName.txt", class_path)
    classes = [p.split("/", 2)[2] for p in class_paths]
    index = _index(class_paths)
    filename = {"train": "Training_01.txt", "test": "Testing_01.txt"}[split]
    listing = _first_file(name, [base, base / "Partitions", base.parent, base.parent / "Partitions"], filename)
    rows = _parsed(name, listing, lambda line: (base / line.lstrip("/"), index[line.rsplit("/", 1)[0]]))
    paths, targets = [p for p, _ in rows], [t for _, t in rows]
    return TransferDataset(_checked(name, paths, listing), targets, classes, str(listing), transform)


def cars(root, split: str, transform=None) -> TransferDataset:
    """Stanford Cars (196): class names from ``devkit/cars_meta.mat``, 1-based labels in the annotation files."""
    name = "cars"
    base = _dataset_dir(name, root, ("stanford_cars", "cars"), "devkit/cars_meta.mat")
    classes = [str(c) for c in _loadmat(name, base / "devkit" / "cars_meta.mat", "class_names")]
    if split == "train":
        annos, images = base / "devkit" / "cars_train_annos.mat", base / "cars_train"
    else:
        annos = _first_file(name, [base, base / "devkit"], "cars_test_annos_withlabels.mat")
        images = base / "cars_test"
    records = _loadmat(name, annos, "annotations")
    if records.dtype.names is None or not {"class", "fname"} <= set(records.dtype.names):
        raise fail(name, f"{annos} has no class/fname fields in its annotations")
    targets = [int(c) - 1 for c in records["class"]]
    if any(not 0 <= t < len(classes) for t in targets):
        raise fail(name, f"{annos} has class labels outside 1..{len(classes)}")
    paths = [images / str(f) for f in records["fname"]]
    return TransferDataset(_checked(name, paths, annos), targets, classes, str(annos), transform)


def aircraft(root, split: str, transform=None) -> TransferDataset:
    """FGVC-Aircraft 2013b at the variant level (100 classes in ``data/variants.txt`` order)."""
    name = "aircraft"
    base = _dataset_dir(name, root, ("fgvc-aircraft-2013b",), "data/variants.txt")
    classes = _parsed(name, base / "data" / "variants.txt", str)
    index = _index(classes)
    listing = base / "data" / f"images_variant_{split}.txt"

    def row(line: str) -> tuple[Path, int]:
        image_id, variant = line.split(" ", 1)  # variant names contain spaces ("Falcon 2000")
        return base / "data" / "images" / f"{image_id}.jpg", index[variant]

    rows = _parsed(name, listing, row)
    paths, targets = [p for p, _ in rows], [t for _, t in rows]
    return TransferDataset(_checked(name, paths, listing), targets, classes, str(listing), transform)


def voc2007(root, split: str, transform=None) -> TransferDataset:
    """PASCAL VOC 2007 classification: targets [N, 20] int8, 1 present, 0 absent, -1 difficult.

    Images are those of ``ImageSets/Main/<split>.txt``; labels come from the per-class files
    ``<class>_<split>.txt``, whose 1/-1/0 map to 1/0/-1 (ssl-transfer counts only 1 as positive).
    """
    name = "voc2007"
    base = _dataset_dir(name, root, ("VOC2007", "VOCdevkit/VOC2007"), "ImageSets/Main")
    main = base / "ImageSets" / "Main"
    ids = _parsed(name, main / f"{split}.txt", str)
    targets = np.zeros((len(ids), len(VOC_CLASSES)), dtype=np.int8)
    for column, cls in enumerate(VOC_CLASSES):
        listing = main / f"{cls}_{split}.txt"
        labels = dict(_parsed(name, listing, lambda line: (line.split()[0], VOC_LABELS[line.split()[1]])))
        missing = [i for i in ids if i not in labels]
        if missing:
            raise fail(name, f"{listing} has no label for image {missing[0]} of {main / f'{split}.txt'}")
        targets[:, column] = [labels[i] for i in ids]
    paths = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
    return TransferDataset(_checked(name, paths, main / f"{split}.txt"), targets, list(VOC_CLASSES),
                           str(main / f"{split}.txt"), transform)


def dtd(root, split: str, transform=None) -> TransferDataset:
    """Describable Textures, split 1 (``labels/<split>1.txt``); classes are the sorted ``images/`` folders."""
    name = "dtd"
    base = _dataset_dir(name, root, ("dtd",), "labels")
    classes = _class_dirs(name, base / "images")
    index = _index(classes)
    listing = base / "labels" / f"{split}1.txt"
    rows = _parsed(name, listing, lambda line: (base / "images" / line, index[line.split("/")[0]]))
    paths, targets = [p for p, _ in rows], [t for _, t in rows]
    return TransferDataset(_checked(name, paths, listing), targets, classes, str(listing), transform)


def _pet_row(line: str) -> tuple[str, int]:
    stem, class_id = line.split()[:2]
    return stem, int(class_id)


def pets(root, split: str, transform=None) -> TransferDataset:
    """Oxford-IIIT Pets (37 breeds): train is ``trainval.txt``; classes are the breed names by class id.

    A name is the image stem without its number ("Abyssinian", "american_bulldog": cats are
    capitalised, dogs not, as in the release), read from ``annotations/list.txt``, which lists every image.
    """
    name = "pets"
    base = _dataset_dir(name, root, ("oxford-iiit-pet",), "annotations")
    annotations = base / "annotations"
    names: dict[int, str] = {}
    for stem, class_id in _parsed(name, annotations / "list.txt", _pet_row):
        names.setdefault(class_id, stem.rsplit("_", 1)[0])
    if not names or sorted(names) != list(range(1, max(names) + 1)):
        raise fail(name, f"{annotations / 'list.txt'} does not name every class id 1..{max(names, default=0)}")
    classes = [names[k] for k in range(1, len(names) + 1)]
    listing = annotations / {"train": "trainval.txt", "test": "test.txt"}[split]
    rows = _parsed(name, listing, _pet_row)
    if any(not 1 <= k <= len(classes) for _, k in rows):
        raise fail(name, f"{listing} has class ids outside 1..{len(classes)}")
    paths = [base / "images" / f"{stem}.jpg" for stem, _ in rows]
    return TransferDataset(_checked(name, paths, listing), [k - 1 for _, k in rows], classes, str(listing),
                           transform)


def _caltech_categories(root) -> Path:
    """``101_ObjectCategories`` given itself, the caltech101/ folder holding it, or that folder's parent."""
    base = root_dir("caltech101", root, fail)
    candidates = [base / "101_ObjectCategories", base / "caltech101" / "101_ObjectCategories"]
    if base.name == "101_ObjectCategories":
        return base
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise fail("caltech101", f"no folder {' or '.join(str(c) for c in candidates)}")


def caltech101(root, split: str, transform=None) -> TransferDataset:
    """Caltech-101 with all 102 folders (incl. BACKGROUND_Google), classes in sorted folder-name order.

    There is no official split. If ``caltech101-splits/{train,test}.txt`` (ssl-transfer's files,
    lines ``Faces/image_0029.jpg 1``) sit in the dataset folder or its parent they are used;
    otherwise each class gets 30 train images drawn by ``numpy.random.default_rng(0)`` (classes in
    order, one generator) and the rest are test. Caveat: ssl-transfer's public split file was
    sampled with replacement (its issue #10), so some classes have fewer than 30 train images
    there. ``split_source`` says which split was used.
    """
    name = "caltech101"
    categories = _caltech_categories(root)
    classes = _class_dirs(name, categories)
    index = _index(classes)
    split_dir = next((d / "caltech101-splits" for d in (categories.parent, categories.parent.parent)
                      if (d / "caltech101-splits" / "train.txt").is_file()
                      and (d / "caltech101-splits" / "test.txt").is_file()), None)
    if split_dir is not None:
        listing = split_dir / f"{split}.txt"

        def row(line: str) -> tuple[Path, int]:
            relative, label = line.split()
            target = index[relative.split("/")[0]]
            if int(label) != target:
                raise ValueError(f"label {label} but '{classes[target]}' is class {target} of the sorted folders")
            return categories / relative, target

        rows = _parsed(name, listing, row)
        paths, targets = [p for p, _ in rows], [t for _, t in rows]
        return TransferDataset(_checked(name, paths, listing), targets, classes, str(listing), transform)
    rng = np.random.default_rng(CALTECH_SEED)
    paths, targets = [], []
    for target, cls in enumerate(classes):
        files = sorted(p for p in (categories / cls).iterdir() if p.suffix.lower() == ".jpg")
        if not files:
            raise fail(name, f"no images in {categories / cls}")
        chosen = set(rng.choice(len(files), size=min(CALTECH_TRAIN_PER_CLASS, len(files)), replace=False).tolist())
        keep = [p for j, p in enumerate(files) if (j in chosen) == (split == "train")]
        paths += keep
        targets += [target] * len(keep)
    source = f"seeded {CALTECH_TRAIN_PER_CLASS} per class (seed {CALTECH_SEED})"
    return TransferDataset(paths, targets, classes, source, transform)


def flowers102(root, split: str, transform=None) -> TransferDataset:
    """Oxford Flowers-102: ``setid.mat`` trnid/valid/tstid pick images; classes are "1".."102" (file labels)."""
    name = "flowers102"
    base = _dataset_dir(name, root, ("flowers-102", "flowers102"), "imagelabels.mat")
    labels = _loadmat(name, base / "imagelabels.mat", "labels").astype(np.int64)
    if labels.size == 0 or labels.min() < 1:
        raise fail(name, f"{base / 'imagelabels.mat'} holds no labels, or labels below 1")
    setid = base / "setid.mat"
    ids = _loadmat(name, setid, {"train": "trnid", "val": "valid", "test": "tstid"}[split]).astype(np.int64)
    if ids.min(initial=1) < 1 or ids.max(initial=1) > len(labels):
        raise fail(name, f"{setid} has image numbers outside 1..{len(labels)} of imagelabels.mat")
    classes = [str(k) for k in range(1, int(labels.max()) + 1)]
    paths = [base / "jpg" / f"image_{i:05d}.jpg" for i in ids]
    return TransferDataset(_checked(name, paths, setid), (labels[ids - 1] - 1).tolist(), classes, str(setid),
                           transform)


LOADERS: dict[str, Callable[..., TransferDataset]] = {
    "food101": food101, "sun397": sun397, "cars": cars, "aircraft": aircraft, "voc2007": voc2007,
    "dtd": dtd, "pets": pets, "caltech101": caltech101, "flowers102": flowers102,
}
