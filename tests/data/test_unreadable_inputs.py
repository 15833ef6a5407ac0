"""Hostile inputs to the datasets: undecodable image files and odd dataset names."""
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from mec_eval.data import build_dataset, dataset_spec
from mec_eval.data.fixtures import write_imagefolder_fixture
from mec_eval.data.folders import UnreadableImage, load_rgb
from mec_eval.data.transfer_fixtures import write_transfer_fixture
from mec_eval.utils import UserError

TO_TENSOR = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize((16, 16), antialias=True)])


def _garbage_imagefolder(tmp_path, how: str):
    root = write_imagefolder_fixture(tmp_path / "imgs", n_classes=2, n_train=3, n_val=2, image_size=16)
    victim = sorted((root / "train").rglob("*.png"))[1]
    if how == "truncated":
        victim.write_bytes(victim.read_bytes()[:40])
    else:  # garbage bytes under a .jpg name
        victim.unlink()
        victim = victim.with_suffix(".jpg")
        victim.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 5)
    return root, victim


@pytest.mark.parametrize("how", ["truncated", "garbage-jpg"])
@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_in_image_folder_names_the_file(tmp_path, how, workers):
    root, victim = _garbage_imagefolder(tmp_path, how)
    dataset = build_dataset("imagefolder", str(root), "train", transform=TO_TENSOR)
    with pytest.raises(UserError) as err:
        for _ in DataLoader(dataset, batch_size=2, num_workers=workers):
            pass
    message = str(err.value)
    assert isinstance(err.value, UnreadableImage)
    assert message.startswith(str(victim)) and "cannot be decoded as an image" in message
    assert "remove or replace it" in message and "\n" not in message and "Traceback" not in message


def test_corrupt_image_in_transfer_dataset_names_the_file(tmp_path):
    base = write_transfer_fixture("dtd", tmp_path, n_classes=2, per_class=2, image_size=16)
    dataset = build_dataset("dtd", str(base), "train")
    victim = dataset.paths[0]
    with open(victim, "wb") as fh:
        fh.write(b"garbage" * 10)
    with pytest.raises(UnreadableImage, match="cannot be decoded as an image"):
        dataset[0]
    assert str(victim) in str(pytest.raises(UserError, dataset.__getitem__, 0).value)


def test_good_image_still_loads(tmp_path):
    root = write_imagefolder_fixture(tmp_path / "imgs", n_classes=1, n_train=1, n_val=1, image_size=16)
    image = load_rgb(next((root / "train").rglob("*.png")))
    assert image.mode == "RGB" and image.size == (16, 16)


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a" * 300, "$x$", "ünïcødé", "x\ny", "", "imagenet "])
def test_hostile_dataset_names_are_one_line_errors(name):
    with pytest.raises(UserError) as err:
        build_dataset(name, "/nonexistent", "train")
    message = str(err.value)
    assert message.startswith("unknown dataset") and "\n" not in message and len(message) < 400


def test_unknown_dataset_keeps_close_matches():
    with pytest.raises(UserError, match="did you mean cifar10"):
        dataset_spec("cifar-10")
