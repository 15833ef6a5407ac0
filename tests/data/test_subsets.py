import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mec_eval.data import build_dataset
from mec_eval.data.fixtures import WNIDS, write_imagenet_fixture
from mec_eval.data.subsets import (IMAGENET_SUBSETS, holdout_split, identify_subset_file, percent_subset_indices,
                                   read_subset_file, subset_indices)
from mec_eval.utils import UserError

SUBSETS = Path(os.environ["MEC_EVAL_SHARED"]) / "data" / "imagenet_subsets"  # set by conftest.py


def _official(name: str) -> Path:
    path = SUBSETS / f"{name}.txt"
    if not path.is_file():
        pytest.skip(f"SimCLR split file not found at {path} (shared/ must sit beside the checkout)")
    return path


@pytest.mark.parametrize("name", ["1percent", "10percent"])
def test_official_split_files(name):
    path = _official(name)
    lines, sha = IMAGENET_SUBSETS[name]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    names = read_subset_file(path)
    assert len(names) == lines == len(path.read_text().splitlines())
    assert identify_subset_file(path) == name
    per_class = Counter(n.split("_")[0] for n in names)
    assert len(per_class) == 1000
    if name == "1percent":
        assert Counter(per_class.values()) == {12: 189, 13: 811}


def test_identify_and_read_own_split(tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("n01440764_10026.JPEG  \nn01443537_10027.JPEG\r\n\n\n")
    assert read_subset_file(own) == ["n01440764_10026.JPEG", "n01443537_10027.JPEG"]
    assert identify_subset_file(own) is None
    official = SUBSETS / "1percent.txt"
    if official.is_file():
        edited = tmp_path / "1percent.txt"
        edited.write_bytes(official.read_bytes() + b"\n")
        assert identify_subset_file(edited) is None


@pytest.mark.parametrize("text, problem", [
    ("n01440764_1.JPEG\nn01440764_2.jpg\n", "line 2"),
    ("n01440764_1.JPEG\n\nn01440764_2.JPEG\n", "line 2"),
    ("n01440764_1.JPEG\nn01440764_1.JPEG\n", "line 2: n01440764_1.JPEG is already listed on line 1"),
    ("\n\n", "lists no images"),
])
def test_read_subset_file_errors(tmp_path, text, problem):
    path = tmp_path / "split.txt"
    path.write_text(text)
    with pytest.raises(UserError, match=problem) as err:
        read_subset_file(path)
    assert str(path) in str(err.value)
    with pytest.raises(UserError, match="not found"):
        read_subset_file(tmp_path / "absent.txt")
    with pytest.raises(UserError, match="not found"):
        identify_subset_file(tmp_path / "absent.txt")


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    return write_imagenet_fixture(tmp_path_factory.mktemp("imagenet"), n_classes=3, n_train=4, n_val=1)


def test_subset_indices_on_imagenet_fixture(imagenet_root):
    samples = build_dataset("imagenet", imagenet_root, "train").samples
    names = [f"{WNIDS[2]}_10027.JPEG", f"{WNIDS[0]}_10029.JPEG", f"{WNIDS[1]}_10026.JPEG"]
    indices = subset_indices(samples, names, "split.txt")
    # ImageFolder sorts by class, then file name: class c, file 10026 + j sits at 4 c + j.
    assert indices == [9, 3, 4]
    assert [Path(samples[i][0]).name for i in indices] == names
    assert [samples[i][1] for i in indices] == [2, 0, 1]


def test_subset_indices_missing_image(imagenet_root):
    samples = build_dataset("imagenet", imagenet_root, "train").samples
    names = [f"{WNIDS[0]}_10026.JPEG", f"{WNIDS[1]}_99999.JPEG"]
    with pytest.raises(UserError, match=rf"1 of 2 images listed in split.txt .*{WNIDS[1]}_99999\.JPEG"):
        subset_indices(samples, names, "split.txt")


def test_subset_indices_wrong_class_folder(tmp_path):
    root = write_imagenet_fixture(tmp_path, n_classes=2, n_train=2, n_val=1)
    stray = f"{WNIDS[0]}_10026.JPEG"
    shutil.move(root / "train" / WNIDS[0] / stray, root / "train" / WNIDS[1] / stray)
    samples = build_dataset("imagenet", root, "train").samples
    with pytest.raises(UserError, match=rf"{stray} .* class {WNIDS[0]} but lies in class folder {WNIDS[1]}"):
        subset_indices(samples, [stray], "split.txt")


def test_percent_subset_indices_balanced_and_seeded():
    targets = np.repeat(np.arange(4), [100, 40, 7, 1])
    rng = np.random.default_rng(0)
    targets = targets[rng.permutation(len(targets))]
    chosen = percent_subset_indices(targets, 10, seed=3)
    # round(0.1 n_c) with at least one per class: 10, 4, 1 (0.7 rounds up), 1 (0.1 rounds to 0 -> 1).
    assert Counter(targets[chosen].tolist()) == {0: 10, 1: 4, 2: 1, 3: 1}
    assert (np.diff(chosen) > 0).all()
    assert np.array_equal(percent_subset_indices(list(targets), 10, seed=3), chosen)
    assert not np.array_equal(percent_subset_indices(targets, 10, seed=4), chosen)
    assert np.array_equal(percent_subset_indices(targets, 100, seed=5), np.arange(len(targets)))
    for bad in (0, -1, 100.5, float("nan")):
        with pytest.raises(UserError, match=r"\(0, 100\]"):
            percent_subset_indices(targets, bad, seed=0)


def _ssl_transfer_holdout(n, fraction, seed):
    """ssl-transfer's own formulation: a Python list shuffled after seeding numpy's global RNG."""
    state = np.random.get_state()
    try:
        indices = list(range(n))
        split = int(np.floor(fraction * n))
        np.random.seed(seed)
        np.random.shuffle(indices)
        return indices[split:], indices[:split]
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("n, fraction, seed", [(10, 0.2, 0), (1037, 0.2, 0), (501, 0.35, 7), (3, 0.2, 1)])
def test_holdout_split_matches_global_seed_formulation(n, fraction, seed):
    before = np.random.get_state()[1].copy()
    train, val = holdout_split(n, fraction, seed)
    assert np.array_equal(np.random.get_state()[1], before)  # global RNG untouched
    ref_train, ref_val = _ssl_transfer_holdout(n, fraction, seed)
    assert train.tolist() == ref_train and val.tolist() == ref_val
    assert len(val) == int(np.floor(fraction * n))
    assert sorted(train.tolist() + val.tolist()) == list(range(n))
    with pytest.raises(UserError):
        holdout_split(n, 1.5)
