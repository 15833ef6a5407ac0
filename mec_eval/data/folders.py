"""Real datasets read from disk: ImageNet and any ImageFolder tree (torchvision ``ImageFolder``), CIFAR.

Every problem with the path the user gave (missing root, missing split folder, missing or corrupt
files) becomes one :class:`~mec_eval.utils.UserError` naming the dataset, the path tried and the
expected layout, instead of torchvision's ``FileNotFoundError``/``RuntimeError`` tracebacks.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Callable

from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100, ImageFolder

from mec_eval.utils import UserError

LAYOUTS = {
    "imagenet": "root/\n  train/<wnid>/*.JPEG\n  val/<wnid>/*.JPEG",
    "imagefolder": "root/\n  train/<class>/*.(jpg|png|...)\n  val/<class>/*  (or test/<class>/*)",
    "cifar10": "root/\n  cifar-10-batches-py/\n    data_batch_1..data_batch_5  test_batch  batches.meta",
    "cifar100": "root/\n  cifar-100-python/\n    train  test  meta",
}
# Written by fixtures.write_cifar_fixture: a folder holding it is a generated copy, not the release.
CIFAR_FIXTURE_MARKER = "MEC_EVAL_FIXTURE"
_WNID = re.compile(r"n\d{8}")


class UnreadableImage(UserError):
    """An image file that does not decode; one line naming the file, also when raised in a loader worker.

    A DataLoader worker's exception comes back rebuilt as ``UnreadableImage("Caught ... Original
    Traceback ...")``; the constructor keeps only the original one-line message from that text.
    """

    def __init__(self, message: str):
        if message.startswith("Caught ") and "Original Traceback" in message:
            tail = message.rstrip().rsplit("\n", 1)[-1]
            message = tail.split(": ", 1)[1] if ": " in tail else tail
        super().__init__(message)


def load_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as RGB; a truncated or garbage file is an :class:`UnreadableImage` naming it."""
    try:
        with open(path, "rb") as fh:
            image = Image.open(fh)
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise UserError(f"{path} cannot be read ({err.strerror}); check the dataset folder") from None
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise UnreadableImage(f"{path} cannot be decoded as an image ({reason}); remove or replace it") from None


def fail(name: str, problem: str) -> UserError:
    """The one error for a bad dataset path: what went wrong, then the expected layout on one line."""
    return UserError(f"{name}: {problem}; expected layout: {' '.join(LAYOUTS[name].split())}")


def root_dir(name: str, root: str | Path | None, fail_with: Callable[[str, str], UserError] = fail) -> Path:
    """``root`` as an existing folder, else the dataset's one-line error (``fail_with`` names its layout)."""
    if root is None:
        raise fail_with(name, "needs a data root folder but none was given (set data.root=PATH)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise fail_with(name, f"no folder {path}")
    return path


class _FixedClassFolder(ImageFolder):
    """``ImageFolder`` with a given class list, so val labels use the train indices."""

    def __init__(self, root: Path, classes: list[str], transform, allow_empty: bool):
        self._fixed_classes = classes
        super().__init__(str(root), transform=transform, loader=load_rgb, allow_empty=allow_empty)

    def find_classes(self, directory):
        return list(self._fixed_classes), {c: i for i, c in enumerate(self._fixed_classes)}


def _class_dirs(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())


def image_folder(name: str, root: str | Path | None, split: str, transform=None,
                 val_names: tuple[str, ...] = ("val", "test"), wnid_classes: bool = False) -> ImageFolder:
    """``root/train/<class>/*`` and ``root/<val name>/<class>/*``; split "test" reads the first val folder found.

    Classes are the sorted train folder names, for both splits (torchvision's order); a val class
    that train lacks is an error, a train class with no val images is allowed. ``wnid_classes``
    requires WordNet-id folder names, which catches a root pointing at the wrong tree.
    """
    base = root_dir(name, root)
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise fail(name, f"no folder {train_dir}")
    classes = _class_dirs(train_dir)
    if not classes:
        raise fail(name, f"no class folders in {train_dir}")
    if wnid_classes and not all(_WNID.fullmatch(c) for c in classes):
        odd = next(c for c in classes if not _WNID.fullmatch(c))
        raise fail(name, f"class folder '{odd}' in {train_dir} is not a WordNet id like n01440764 "
                         "(use dataset 'imagefolder' for other class names)")
    folder = train_dir
    if split == "test":
        found = [base / v for v in val_names if (base / v).is_dir()]
        if not found:
            raise fail(name, f"no folder {' or '.join(str(base / v) for v in val_names)}")
        folder = found[0]
        extra = sorted(set(_class_dirs(folder)) - set(classes))
        if extra:
            raise fail(name, f"{folder} has classes missing from {train_dir}: {', '.join(extra[:5])}")
    try:
        dataset = _FixedClassFolder(folder, classes, transform, allow_empty=split == "test")
    except FileNotFoundError as err:
        raise fail(name, f"no images under {folder} ({err})") from None
    if len(dataset) == 0:
        raise fail(name, f"no images under {folder}")
    return dataset


def imagenet(root, split: str, transform=None) -> ImageFolder:
    """ImageNet-1k in the usual layout: class folders named by WordNet id, val pre-sorted into them."""
    return image_folder("imagenet", root, split, transform, val_names=("val",), wnid_classes=True)


def imagefolder(root, split: str, transform=None) -> ImageFolder:
    """Any ``train/<class>`` + ``val/<class>`` (or ``test/<class>``) tree of images."""
    return image_folder("imagefolder", root, split, transform)


def _restricted_load(path: Path) -> None:
    """Unpickle ``path`` admitting only numpy arrays and plain containers; raise on anything else.

    A fixture folder's files are not vouched for by the official md5 sums, so before torchvision
    unpickles them they must pass this check (DESIGN: never unpickle untrusted objects).
    """
    allowed = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    class Restricted(pickle.Unpickler):
        def find_class(self, module, qualname):
            if (module, qualname) not in allowed:
                raise pickle.UnpicklingError(f"refusing to load {module}.{qualname}")
            return super().find_class(module, qualname)

    with open(path, "rb") as fh:
        Restricted(fh, encoding="latin1").load()


def _cifar_class(base: type[CIFAR10]) -> type[CIFAR10]:
    class Checked(base):
        """torchvision's CIFAR loader; fixture folders skip only the md5 comparison.

        torchvision checks each file against the md5 of the official release (``check_integrity``),
        which a generated fixture cannot match. For a folder marked as a fixture the md5s are set
        to None, which ``check_integrity`` treats as "the file must exist"; every other folder is
        checked exactly as torchvision does.
        """

        def __init__(self, root: Path, train: bool, transform, verify_md5: bool):
            if not verify_md5:
                # Instance attributes shadow the class tables that torchvision reads.
                self.train_list = [[f, None] for f, _ in base.train_list]
                self.test_list = [[f, None] for f, _ in base.test_list]
                self.meta = {**base.meta, "md5": None}
            super().__init__(str(root), train=train, transform=transform, download=False)

    Checked.__name__ = base.__name__
    return Checked


_CIFAR_CLASSES = {"cifar10": _cifar_class(CIFAR10), "cifar100": _cifar_class(CIFAR100)}


def cifar(name: str, root, split: str, transform=None) -> CIFAR10:
    """CIFAR-10/100 python batches; ``root`` may be the folder holding the batch folder, or that folder.

    The release's files are unpickled only once their md5 matches (torchvision's check); a fixture
    folder's files are first screened by a restricted unpickler instead.
    """
    loader = _CIFAR_CLASSES[name]
    path = root_dir(name, root)
    if path.name == loader.base_folder:
        path = path.parent
    batches = path / loader.base_folder
    if not batches.is_dir():
        raise fail(name, f"no folder {batches}")
    names = [f for f, _ in loader.train_list + loader.test_list] + [loader.meta["filename"]]
    missing = [f for f in names if not (batches / f).is_file()]
    if missing:
        raise fail(name, f"missing {', '.join(missing)} in {batches}")
    fixture = (batches / CIFAR_FIXTURE_MARKER).is_file()
    try:
        if fixture:
            for f in names:
                _restricted_load(batches / f)
        return loader(path, train=split == "train", transform=transform, verify_md5=not fixture)
    except RuntimeError:  # torchvision's md5 mismatch
        raise fail(name, f"files in {batches} do not match the official release's md5 sums (corrupt or partial "
                         "copy?); get them from https://www.cs.toronto.edu/~kriz/cifar.html") from None
    except (ValueError, KeyError, EOFError, pickle.UnpicklingError) as err:
        raise fail(name, f"files in {batches} are corrupt ({type(err).__name__}: {err})") from None
