"""Labelled subsets for semi-supervised and transfer evaluation.

- SimCLR's ImageNet 1 % / 10 % split files (google-research/simclr ``imagenet_subsets/``; MEC
  Table 2): read, recognise by sha256, and map to indices of an ImageFolder's ``samples``.
- Class-balanced seeded percent subsets for datasets without official split files.
- ssl-transfer's 20 % validation hold-out (``linear.py`` ``get_train_valid_loader``; MEC Table 8).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mec_eval.utils import UserError, sha256_file

# name -> (line count, sha256) of google-research/simclr imagenet_subsets/{1,10}percent.txt.
# 1percent: 1,000 classes, 189 with 12 images and 811 with 13.
IMAGENET_SUBSETS: dict[str, tuple[int, str]] = {
    "1percent": (12811, "71e82a48ba78252683ae334c4d019ebd5c6e855b9599c1389fbe83eb9549cf17"),
    "10percent": (128116, "6d09de11e7bdaf5b1f3b1f249b6183695f97310cdd20f0c03e7235b6b9392091"),
}
# An ImageNet train file name: "<wnid>_<number>.JPEG", e.g. n01558993_4351.JPEG.
_SUBSET_LINE = re.compile(r"(n\d{8})_\d+\.JPEG")
_SHOW = 5  # missing names shown in an error message


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"subset file {path} not found; the official ImageNet splits are "
                        "imagenet_subsets/1percent.txt and 10percent.txt of github.com/google-research/simclr")


def read_subset_file(path) -> list[str]:
    """The image file names listed in a split file, one ``<wnid>_<number>.JPEG`` per line.

    Trailing whitespace and blank lines at the end are tolerated; any other line that is not such a
    name, or a name listed twice, is a UserError naming the file and line number.
    """
    path = Path(path).expanduser()
    _check_file(path)
    try:
        lines = [line.rstrip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as err:
        raise UserError(f"subset file {path} is not a UTF-8 text file ({err})") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise UserError(f"subset file {path} lists no images")
    seen: dict[str, int] = {}
    for number, name in enumerate(lines, start=1):
        if not _SUBSET_LINE.fullmatch(name):
            raise UserError(f"{path}, line {number}: {name!r} is not an ImageNet train file name "
                            "like n01558993_4351.JPEG")
        if name in seen:
            raise UserError(f"{path}, line {number}: {name} is already listed on line {seen[name]}")
        seen[name] = number
    return lines


def identify_subset_file(path) -> str | None:
    """"1percent" or "10percent" when the file is byte-identical to SimCLR's split, else None."""
    path = Path(path).expanduser()
    _check_file(path)
    digest = sha256_file(path)
    return next((name for name, (_, sha) in IMAGENET_SUBSETS.items() if sha == digest), None)


def subset_indices(samples: list[tuple[str, int]], names: list[str], source: str) -> list[int]:
    """Indices into an ImageFolder's ``samples`` of the images named in ``names``, in that order.

    Every name must be found, and the synset prefix of each name must equal the class folder the
    file lies in (``samples`` paths are ``.../<wnid>/<file>``); otherwise a UserError names the
    missing or misplaced images and ``source``, the split file they come from.
    """
    wanted = set(names)
    found: dict[str, int] = {}
    for index, (path, _) in enumerate(samples):
        name = Path(path).name
        if name in wanted:
            if name in found:
                raise UserError(f"{name} (listed in {source}) occurs twice in the dataset: "
                                f"{samples[found[name]][0]} and {path}")
            found[name] = index
    missing = [name for name in names if name not in found]
    if missing:
        shown = ", ".join(missing[:_SHOW]) + (", ..." if len(missing) > _SHOW else "")
        raise UserError(f"{len(missing)} of {len(names)} images listed in {source} are not in the dataset "
                        f"(first: {shown}); data.root must hold the full ImageNet train set")
    for name in names:
        folder = Path(samples[found[name]][0]).parent.name
        wnid = name.split("_", 1)[0]
        if folder != wnid:
            raise UserError(f"{name} (listed in {source}) is of class {wnid} but lies in class folder "
                            f"{folder}: {samples[found[name]][0]}")
    return [found[name] for name in names]


def percent_subset_indices(targets, percent: float, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced ``percent`` % subset, for sets without official split files.

    Per class ``c`` with ``n_c`` examples, ``max(1, round(percent / 100 * n_c))`` of them (Python's
    round, half to even) are drawn without replacement with ``np.random.default_rng(seed)``,
    classes in increasing label order, so the subset is reproducible from (targets, percent, seed).
    """
    if not 0 < percent <= 100:
        raise UserError(f"subset percent must be in (0, 100], got {percent}")
    targets = np.asarray(targets)
    if targets.ndim != 1:
        raise UserError(f"expected one label per example, got an array of shape {targets.shape}")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        count = max(1, round(percent / 100 * len(members)))
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def holdout_split(n: int, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of ssl-transfer's validation hold-out from a training set of ``n``.

    Reproduces ``get_train_valid_loader`` of ssl-transfer's ``linear.py`` exactly: indices
    ``0..n-1`` shuffled after ``np.random.seed(seed)``, the first ``floor(fraction * n)`` are val.
    A private ``RandomState(seed)`` draws the same permutation without touching numpy's global state.
    """
    if not 0 <= fraction <= 1:
        raise UserError(f"hold-out fraction must be in [0, 1], got {fraction}")
    if n < 0:
        raise UserError(f"dataset size must be >= 0, got {n}")
    indices = np.arange(n)
    np.random.RandomState(seed).shuffle(indices)
    split = int(np.floor(fraction * n))
    return indices[split:], indices[:split]
