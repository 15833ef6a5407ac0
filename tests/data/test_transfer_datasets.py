"""The 11 transfer datasets: fixtures in the release layouts read back by the real loaders, splits, errors."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from torch.utils.data import Dataset

from mec_eval.data import TRANSFER_DATASETS, build_dataset, dataset_spec
from mec_eval.data.transfer import LAYOUTS
from mec_eval.data.transfer_fixtures import write_all_transfer_fixtures, write_transfer_fixture
from mec_eval.utils import UserError

N, PER = 3, 2  # classes and images per class and split in the shared fixture
VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
       "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
CLASSES = {  # the first N real names of each release (Flowers: label numbers)
    "food101": ["apple_pie", "baby_back_ribs", "baklava"],
    "sun397": ["abbey", "airplane_cabin", "bakery/shop"],
    "cars": ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"],
    "aircraft": ["707-320", "F-16A/B", "Falcon 2000"],
    "voc2007": VOC,
    "dtd": ["banded", "blotchy", "braided"],
    "pets": ["Abyssinian", "american_bulldog", "american_pit_bull_terrier"],
    "caltech101": ["BACKGROUND_Google", "Faces", "Faces_easy"],
    "flowers102": ["1", "2", "3"],
}
FOLDERS = {"food101": "food-101", "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
           "sun397": "SUN397", "cars": "stanford_cars", "aircraft": "fgvc-aircraft-2013b", "voc2007": "VOC2007",
           "dtd": "dtd", "pets": "oxford-iiit-pet", "caltech101": "caltech101", "flowers102": "flowers-102"}
NEW = [name for name in TRANSFER_DATASETS if not name.startswith("cifar")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One user data folder holding all 11 sets; read-only for the tests that share it."""
    parent = tmp_path_factory.mktemp("data")
    return parent, write_all_transfer_fixtures(parent, n_classes=N, per_class=PER, image_size=24)


def _fails(name, root, split, *expected):
    with pytest.raises(UserError) as info:
        build_dataset(name, root, split)
    message = str(info.value)
    assert message.startswith(f"{name}: ")
    assert " ".join(LAYOUTS[name].split()) in message and " ".join(dataset_spec(name).layout.split()) in message
    for text in expected:
        assert str(text) in message, message
    return message


def _expected_targets(name, n_items):
    if name == "food101":  # meta/*.json is keyed by class
        return [k // PER for k in range(n_items)]
    return [k % N for k in range(n_items)]


def _voc_rows(n_items):
    """The fixture's rule: class k % N present, the next class difficult for odd k, all else absent."""
    rows = np.zeros((n_items, 20), dtype=np.int8)
    for k in range(n_items):
        rows[k, k % N] = 1
        if k % 2:
            rows[k, k % N + 1] = -1
    return rows


def test_transfer_specs():
    assert TRANSFER_DATASETS == ("food101", "cifar10", "cifar100", "sun397", "cars", "aircraft", "voc2007", "dtd",
                                 "pets", "caltech101", "flowers102")
    with_val = {"aircraft", "dtd", "flowers102", "voc2007"}
    metrics = {"aircraft": "mean_per_class", "pets": "mean_per_class", "caltech101": "mean_per_class",
               "flowers102": "mean_per_class", "voc2007": "voc07_map"}
    sizes = {"food101": 101, "cifar10": 10, "cifar100": 100, "sun397": 397, "cars": 196, "aircraft": 100,
             "voc2007": 20, "dtd": 47, "pets": 37, "caltech101": 102, "flowers102": 102}
    for name in TRANSFER_DATASETS:
        spec = dataset_spec(name)
        assert spec.splits == (("train", "val", "test") if name in with_val else ("train", "test"))
        assert spec.metric == metrics.get(name, "top1") and spec.multilabel == (name == "voc2007")
        assert spec.num_classes == sizes[name] and not spec.embedded
        assert spec.image_size == (32 if name.startswith("cifar") else 224)
    assert dataset_spec("imagenet").splits == ("train", "test") and dataset_spec("imagenet").metric == "top1"


@pytest.mark.parametrize("name, split", [("food101", "val"), ("voc2007", "trainval"), ("cars", "valid"),
                                         ("imagenet", "val")])
def test_unknown_split_names_the_valid_ones(name, split):
    with pytest.raises(UserError, match=f"{name}: unknown split '{split}' \\(choose "
                                        f"{' or '.join(dataset_spec(name).splits)}\\)"):
        build_dataset(name, "/nowhere", split)


@pytest.mark.parametrize("name", [n for n in TRANSFER_DATASETS if n != "caltech101"])
def test_fixture_round_trip(data, name):
    parent, roots = data
    assert roots[name].name == FOLDERS[name] and roots[name].is_dir()
    for split in dataset_spec(name).splits:
        dataset = build_dataset(name, roots[name], split)
        from_parent = build_dataset(name, parent, split, transform=lambda image: image.size)
        assert isinstance(dataset, Dataset) and len(dataset) == len(from_parent)
        assert np.array_equal(np.asarray(dataset.targets), np.asarray(from_parent.targets))
        size = 32 if name.startswith("cifar") else 24
        assert from_parent[len(from_parent) - 1][0] == (size, size)
        image, target = dataset[1]
        assert image.mode == "RGB" and image.size == (size, size) and np.asarray(image).std() > 10
        if name.startswith("cifar"):
            assert len(dataset) == N * PER and dataset.targets == [k % len(dataset.classes) for k in range(N * PER)]
            continue
        assert dataset.classes == CLASSES[name] and len(dataset) == N * PER
        if name == "voc2007":
            assert dataset.targets.dtype == np.int8 and np.array_equal(dataset.targets, _voc_rows(N * PER))
            assert target.dtype == torch.int8 and target.tolist() == [0, 1, -1] + [0] * 17
        else:
            assert dataset.targets == _expected_targets(name, N * PER) and target == dataset.targets[1]
        assert Path(dataset.split_source).is_file()


def test_splits_are_disjoint(data):
    _, roots = data
    for name in NEW:
        paths = [p for split in dataset_spec(name).splits for p in build_dataset(name, roots[name], split).paths]
        assert len(paths) == len(set(paths)), name


@pytest.mark.parametrize("name", ["food101", "sun397", "dtd", "caltech101"])
def test_image_paths_agree_with_targets(data, name):
    """Where the release names the class folder in the path, the loader's target must match it."""
    dataset = build_dataset(name, data[1][name], "test")
    for path, target in zip(dataset.paths, dataset.targets):
        assert Path(path).parent.name == dataset.classes[target].split("/")[-1]


def test_pets_and_aircraft_pair_names_with_targets(data):
    pets = build_dataset("pets", data[1]["pets"], "train")
    assert [p.rsplit("/", 1)[1].rsplit("_", 1)[0] for p in pets.paths] == [pets.classes[t] for t in pets.targets]
    lines = (data[1]["aircraft"] / "data" / "images_variant_val.txt").read_text().splitlines()
    aircraft = build_dataset("aircraft", data[1]["aircraft"], "val")
    assert [line.split(" ", 1)[1] for line in lines] == [aircraft.classes[t] for t in aircraft.targets]


def test_fixture_files_follow_the_release_formats(data):
    parent, roots = data
    voc_main = roots["voc2007"] / "ImageSets" / "Main"
    assert (voc_main / "aeroplane_train.txt").read_text().splitlines()[:2] == ["000001  1", "000002 -1"]
    assert (voc_main / "bird_train.txt").read_text().splitlines()[1] == "000002  0"
    assert len((voc_main / "trainval.txt").read_text().split()) == 2 * N * PER
    assert "<difficult>1</difficult>" in (roots["voc2007"] / "Annotations" / "000002.xml").read_text()
    annos = scipy.io.loadmat(roots["cars"] / "devkit" / "cars_train_annos.mat")["annotations"]
    assert annos.shape == (1, N * PER) and annos.dtype.names == ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2",
                                                                 "class", "fname")
    assert annos[0, 1]["class"].item() == 2 and annos[0, 1]["fname"].item() == "00002.jpg"
    cars_meta = scipy.io.loadmat(roots["cars"] / "devkit" / "cars_meta.mat")
    assert cars_meta["class_names"].shape == (1, N) and cars_meta["class_names"][0, 0].item() == CLASSES["cars"][0]
    setid = scipy.io.loadmat(roots["flowers102"] / "setid.mat")
    assert setid["trnid"].shape == (1, N * PER) and setid["tstid"][0, 0] == 2 * N * PER + 1
    assert scipy.io.loadmat(roots["flowers102"] / "imagelabels.mat")["labels"].shape == (1, 3 * N * PER)
    food = json.loads((roots["food101"] / "meta" / "train.json").read_text())
    assert list(food) == CLASSES["food101"] and food["baklava"][0].startswith("baklava/")
    sun_line = (parent / "Partitions" / "Training_01.txt").read_text().splitlines()[2]
    assert sun_line.startswith("/b/bakery/shop/sun_") and len(sun_line) == len("/b/bakery/shop/sun_.jpg") + 16
    assert (roots["pets"] / "annotations" / "trainval.txt").read_text().splitlines()[1] == "american_bulldog_2 2 2 1"
    assert (roots["pets"] / "annotations" / "list.txt").read_text().startswith("#Image CLASS-ID SPECIES BREED ID\n")
    assert (roots["dtd"] / "labels" / "val1.txt").read_text().splitlines()[0] == "banded/banded_0007.jpg"


def test_write_all_round_trip_from_the_parent(data):
    parent, roots = data
    assert list(roots) == list(TRANSFER_DATASETS)
    for name in TRANSFER_DATASETS:
        sizes = [len(build_dataset(name, parent, split)) for split in dataset_spec(name).splits]
        assert sizes == ([30 * N, PER * N] if name == "caltech101" else [N * PER] * len(sizes)), name


def _caltech_files(categories, cls):
    return sorted(p.name for p in (categories / cls).iterdir())


def test_caltech_default_split_is_seeded_30_per_class(tmp_path):
    root = write_transfer_fixture("caltech101", tmp_path, n_classes=3, per_class=2, image_size=8)
    categories = root / "101_ObjectCategories"
    for extra in _caltech_files(categories, "Faces")[10:]:
        (categories / "Faces" / extra).unlink()  # a class with fewer than 30 images: all go to train
    train, test = build_dataset("caltech101", root, "train"), build_dataset("caltech101", root, "test")
    assert train.split_source == test.split_source == "seeded 30 per class (seed 0)"
    assert [train.targets.count(c) for c in range(3)] == [30, 10, 30]
    assert [test.targets.count(c) for c in range(3)] == [2, 0, 2]
    rng = np.random.default_rng(0)  # the documented rule, classes in sorted order, one generator
    expected = []
    for cls in CLASSES["caltech101"]:
        files = _caltech_files(categories, cls)
        chosen = rng.choice(len(files), size=min(30, len(files)), replace=False)
        expected += sorted(str(categories / cls / files[j]) for j in chosen)
    assert train.paths == expected
    assert sorted(train.paths + test.paths) == sorted(str(p) for p in categories.glob("*/*.jpg"))
    again = build_dataset("caltech101", categories, "train")  # 101_ObjectCategories itself as root
    assert again.paths == train.paths and build_dataset("caltech101", tmp_path, "test").paths == test.paths


@pytest.mark.parametrize("where", ["inside", "beside"])
def test_caltech_split_files_are_honoured(tmp_path, where):
    root = write_transfer_fixture("caltech101", tmp_path, n_classes=2, per_class=1, image_size=8)
    splits = (root if where == "inside" else tmp_path) / "caltech101-splits"
    splits.mkdir()
    (splits / "train.txt").write_text("Faces/image_0029.jpg 1\nBACKGROUND_Google/image_0003.jpg 0\n")
    (splits / "test.txt").write_text("BACKGROUND_Google/image_0001.jpg 0\n")
    train = build_dataset("caltech101", root, "train")
    assert train.split_source == str(splits / "train.txt") and train.targets == [1, 0]
    assert train.paths == [str(root / "101_ObjectCategories" / "Faces" / "image_0029.jpg"),
                           str(root / "101_ObjectCategories" / "BACKGROUND_Google" / "image_0003.jpg")]
    assert len(build_dataset("caltech101", tmp_path, "test")) == 1
    (splits / "test.txt").write_text("Faces/image_0001.jpg 0\n")  # label disagrees with the sorted folders
    _fails("caltech101", root, "test", "test.txt line 1", "'Faces' is class 1")
    (splits / "test.txt").write_text("Faces/image_0099.jpg 1\n")
    _fails("caltech101", root, "test", root / "101_ObjectCategories" / "Faces" / "image_0099.jpg")


def test_sun397_partitions_inside_the_dataset_folder(tmp_path):
    root = write_transfer_fixture("sun397", tmp_path, n_classes=2, per_class=1, image_size=8)
    (tmp_path / "Partitions").rename(root / "Partitions")
    assert len(build_dataset("sun397", root, "train")) == 2
    for listing in (root / "Partitions").iterdir():
        listing.rename(root / listing.name)
    assert build_dataset("sun397", tmp_path, "test").split_source == str(root / "Testing_01.txt")


def test_cars_test_annotations_in_devkit_and_without_labels(tmp_path):
    root = write_transfer_fixture("cars", tmp_path, n_classes=2, per_class=1, image_size=8)
    annos = root / "cars_test_annos_withlabels.mat"
    annos.rename(root / "devkit" / annos.name)
    assert build_dataset("cars", root, "test").targets == [0, 1]
    labelled = scipy.io.loadmat(root / "devkit" / annos.name)["annotations"]
    unlabelled = np.empty(labelled.shape, dtype=[("fname", "O")])  # like cars_test_annos.mat
    unlabelled["fname"] = labelled["fname"]
    scipy.io.savemat(root / "devkit" / annos.name, {"annotations": unlabelled})
    _fails("cars", root, "test", "no class/fname fields")


@pytest.mark.parametrize("name", NEW)
def test_missing_root(tmp_path, name):
    _fails(name, None, "train", "needs a data root")
    _fails(name, tmp_path / "nowhere", "train", tmp_path / "nowhere")
    _fails(name, tmp_path, "train", tmp_path)  # an empty folder: says what it looked for, and where


MISSING_SPLIT_FILE = {
    "food101": ("test", "meta/test.json"), "sun397": ("test", "../Partitions/Testing_01.txt"),
    "cars": ("test", "cars_test_annos_withlabels.mat"), "aircraft": ("val", "data/images_variant_val.txt"),
    "voc2007": ("val", "ImageSets/Main/dog_val.txt"), "dtd": ("val", "labels/val1.txt"),
    "pets": ("test", "annotations/test.txt"), "flowers102": ("val", "setid.mat"),
}


@pytest.mark.parametrize("name", sorted(MISSING_SPLIT_FILE))
def test_missing_split_file(tmp_path, name):
    root = write_transfer_fixture(name, tmp_path, n_classes=2, per_class=1, image_size=8)
    split, relative = MISSING_SPLIT_FILE[name]
    (root / relative).unlink()
    _fails(name, root, split, relative.split("/")[-1])
    if name != "flowers102":  # setid.mat holds all three splits
        assert len(build_dataset(name, root, "train")) == 2  # the other splits still build


@pytest.mark.parametrize("name", NEW)
def test_listed_image_missing(tmp_path, name):
    root = write_transfer_fixture(name, tmp_path, n_classes=2, per_class=2, image_size=8)
    if name == "caltech101":  # the seeded split lists what is on disk; a split file can list a lost image
        (root / "caltech101-splits").mkdir()
        (root / "caltech101-splits" / "train.txt").write_text("Faces/image_0001.jpg 1\n")
        (root / "caltech101-splits" / "test.txt").write_text("Faces/image_0002.jpg 1\nFaces/image_0003.jpg 1\n")
    gone = build_dataset(name, root, "test").paths[1]
    (root / gone).unlink()
    _fails(name, root, "test", gone, "missing")


@pytest.mark.parametrize("name, relative, text, expected", [
    ("aircraft", "data/images_variant_train.txt", "1025794 Boeing 747\n", "names unknown 'Boeing 747'"),
    ("voc2007", "ImageSets/Main/cat_train.txt", "000001 2\n", "names unknown '2'"),
    ("dtd", "labels/train1.txt", "striped/striped_0001.jpg\n", "names unknown 'striped'"),
    ("pets", "annotations/trainval.txt", "Abyssinian_1 one 1 1\n", "malformed"),
    ("food101", "meta/train.json", "{not json", "not valid JSON"),
    ("flowers102", "setid.mat", None, "not a readable MATLAB file"),
])
def test_malformed_files(tmp_path, name, relative, text, expected):
    root = write_transfer_fixture(name, tmp_path, n_classes=2, per_class=1, image_size=8)
    (root / relative).write_text(text if text is not None else "not a mat file at all, just text" * 8)
    _fails(name, root, "train", root / relative if name != "flowers102" else relative, expected)


def test_voc_image_without_a_class_label(tmp_path):
    root = write_transfer_fixture("voc2007", tmp_path, n_classes=2, per_class=1, image_size=8)
    listing = root / "ImageSets" / "Main" / "sofa_test.txt"
    listing.write_text("".join(listing.read_text().splitlines(keepends=True)[1:]))
    first = (root / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    _fails("voc2007", root.parent, "test", f"no label for image {first}", "sofa_test.txt")


def test_fixture_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_classes must be in 1..6"):
        write_transfer_fixture("dtd", tmp_path, n_classes=7)
    with pytest.raises(ValueError, match="unknown transfer dataset"):
        write_transfer_fixture("imagenet", tmp_path)
