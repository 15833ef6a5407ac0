"""Datasets read from disk: fixture round trips through the real loaders, and every bad-path error."""
import pickle
import shutil

import numpy as np
import pytest

from mec_eval.data import DATASETS, build_dataset, dataset_spec
from mec_eval.data.fixtures import (CIFAR10_NAMES, WNIDS, write_cifar_fixture, write_imagefolder_fixture,
                                    write_imagenet_fixture)
from mec_eval.data.folders import CIFAR_FIXTURE_MARKER
from mec_eval.data.shapes import KINDS
from mec_eval.utils import UserError


def _layout(name: str) -> str:
    return " ".join(dataset_spec(name).layout.split())


def _fails(name, root, split="train", *expected):
    with pytest.raises(UserError) as info:
        build_dataset(name, root, split)
    message = str(info.value)
    assert message.startswith(f"{name}: ") and _layout(name) in message
    for text in expected:
        assert str(text) in message
    return message


def test_registry_names_and_specs():
    assert DATASETS.names() == sorted(["digits", "shapes", "imagenet", "imagefolder", "cifar10", "cifar100",
                                       "food101", "sun397", "cars", "aircraft", "voc2007", "dtd", "pets",
                                       "caltech101", "flowers102",
                                       # detection and video sets (their own kinds; real layouts and synthetic)
                                       "pascal-voc", "coco2017", "shapes-detection", "otb2015", "davis2017",
                                       "mot16", "mots20", "posetrack2018", "shapes-video"])
    assert all(help_line and "\n" not in help_line for _, help_line in DATASETS.describe())
    assert dataset_spec("imagenet").image_size == 224 and dataset_spec("imagenet").num_classes is None
    assert dataset_spec("cifar100").num_classes == 100 and not dataset_spec("cifar100").embedded
    assert dataset_spec("shapes").embedded and dataset_spec("shapes").image_size == 32


@pytest.mark.parametrize("call", [lambda: build_dataset("imagenett", "/x", "train"), lambda: dataset_spec("imagenett")])
def test_typo_names_the_close_match(call):
    with pytest.raises(UserError, match="did you mean imagenet"):
        call()


def test_imagenet_fixture_round_trip(tmp_path):
    root = write_imagenet_fixture(tmp_path, n_classes=3, n_train=4, n_val=2, image_size=40)
    train, val = build_dataset("imagenet", root, "train"), build_dataset("imagenet", str(root), "test")
    assert (len(train), len(val)) == (12, 6)
    assert train.classes == val.classes == list(WNIDS[:3])
    assert train.targets == [0] * 4 + [1] * 4 + [2] * 4 and val.targets == [0, 0, 1, 1, 2, 2]
    image, label = val[3]
    assert image.mode == "RGB" and image.size == (40, 40) and label == 1
    assert (root / "train" / WNIDS[0] / f"{WNIDS[0]}_10026.JPEG").is_file()
    assert (root / "val" / WNIDS[2] / "ILSVRC2012_val_00000006.JPEG").is_file()


@pytest.mark.parametrize("val_name", ["val", "test"])
def test_imagefolder_fixture_round_trip(tmp_path, val_name):
    root = write_imagefolder_fixture(tmp_path, n_classes=4, n_train=3, n_val=2, val_name=val_name)
    train, test = build_dataset("imagefolder", root, "train"), build_dataset("imagefolder", root, "test")
    assert train.classes == test.classes == sorted(KINDS[:4])
    assert (len(train), len(test)) == (12, 8)
    assert sorted(test.targets) == [0, 0, 1, 1, 2, 2, 3, 3]
    path, label = test.samples[0]
    assert path.endswith(".png") and f"/{val_name}/{test.classes[label]}/" in path


def test_val_labels_follow_train_classes(tmp_path):
    root = write_imagefolder_fixture(tmp_path, n_classes=3)
    shutil.rmtree(root / "val" / "circle")  # val lacks the first train class: indices must not shift
    test = build_dataset("imagefolder", root, "test")
    assert test.classes == ["circle", "square", "triangle"] and sorted(set(test.targets)) == [1, 2]


def test_val_class_unknown_to_train_is_an_error(tmp_path):
    root = write_imagefolder_fixture(tmp_path, n_classes=2)
    shutil.copytree(root / "val" / "circle", root / "val" / "zebra")
    _fails("imagefolder", root, "test", "zebra", root / "val")


def _read_raw(path):
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")  # the CIFAR page's way: keys come back as bytes


@pytest.mark.parametrize("kind, folder, test_file, label_key",
                         [("cifar10", "cifar-10-batches-py", "test_batch", b"labels"),
                          ("cifar100", "cifar-100-python", "test", b"fine_labels")])
def test_cifar_fixture_reads_back_exactly(tmp_path, kind, folder, test_file, label_key):
    root = write_cifar_fixture(tmp_path, kind=kind, n_train=20, n_test=10)
    raw = _read_raw(root / folder / test_file)
    expected = raw[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    for given_root in (root, root / folder, str(root)):  # the parent or the batch folder itself
        test = build_dataset(kind, given_root, "test")
        assert len(test) == 10 and test.targets == raw[label_key] == list(range(10))
        assert np.array_equal(np.stack([np.asarray(test[i][0]) for i in range(10)]), expected)
    train = build_dataset(kind, root, "train")
    assert len(train) == 20 and train.targets == [i % len(train.classes) for i in range(20)]
    assert expected.std() > 10  # real images, not blanks
    if kind == "cifar10":
        assert train.classes == list(CIFAR10_NAMES)
        assert _read_raw(root / folder / "batches.meta")[b"label_names"][0] == b"airplane"
    else:
        assert len(train.classes) == 100 and train.classes[:2] == ["apple", "aquarium_fish"]
        assert _read_raw(root / folder / "train")[b"coarse_labels"][:4] == [4, 1, 14, 8]


def test_cifar_without_fixture_marker_gets_the_md5_check(tmp_path):
    root = write_cifar_fixture(tmp_path)
    (root / "cifar-10-batches-py" / CIFAR_FIXTURE_MARKER).unlink()
    _fails("cifar10", root, "train", "md5")


def test_cifar_fixture_refuses_pickled_code(tmp_path):
    root = write_cifar_fixture(tmp_path)
    canary = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(canary), "w"))

    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({"data": Payload()}, fh)
    _fails("cifar10", root, "test", "refusing to load")
    assert not canary.exists()


def test_cifar_missing_file(tmp_path):
    root = write_cifar_fixture(tmp_path, kind="cifar100")
    (root / "cifar-100-python" / "meta").unlink()
    _fails("cifar100", root, "test", "missing meta")


@pytest.mark.parametrize("name", ["imagenet", "imagefolder", "cifar10", "cifar100"])
def test_missing_root(tmp_path, name):
    _fails(name, None, "train", "needs a data root")
    _fails(name, tmp_path / "nowhere", "train", tmp_path / "nowhere")


@pytest.mark.parametrize("name, tried", [("imagenet", "train"), ("imagefolder", "train"),
                                         ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_root_without_the_expected_folder(tmp_path, name, tried):
    _fails(name, tmp_path, "train", tmp_path / tried)


def test_missing_val_folder(tmp_path):
    root = write_imagenet_fixture(tmp_path, n_classes=1, n_train=1, n_val=1)
    shutil.rmtree(root / "val")
    _fails("imagenet", root, "test", root / "val")
    assert len(build_dataset("imagenet", root, "train")) == 1


def test_class_folder_without_images(tmp_path):
    root = write_imagenet_fixture(tmp_path, n_classes=2, n_train=1, n_val=1)
    for image in (root / "train" / WNIDS[1]).iterdir():
        image.unlink()
    _fails("imagenet", root, "train", "no images", WNIDS[1])


def test_imagenet_rejects_non_wordnet_folders(tmp_path):
    root = write_imagefolder_fixture(tmp_path, n_classes=2)
    _fails("imagenet", root, "train", "'circle'", "imagefolder")
    assert len(build_dataset("imagefolder", root, "train")) == 8


def test_pointing_at_the_train_folder_itself(tmp_path):
    root = write_imagenet_fixture(tmp_path, n_classes=1, n_train=1, n_val=1)
    _fails("imagenet", root / "train", "train", root / "train" / "train")
