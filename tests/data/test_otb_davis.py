"""OTB-2015 and DAVIS-2017 readers on fixtures in their real layouts; synthetic writers; hostile inputs."""
import numpy as np
import pytest
from PIL import Image

from mec_eval.data import build_dataset, check_item, otb
from mec_eval.data.davis import (
    load_davis,
    read_label_png,
    write_label_png,
    write_shapes_davis,
)
from mec_eval.data.otb import load_otb, write_shapes_otb
from mec_eval.utils import UserError


def _images(folder, numbers, size=(16, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        Image.new("RGB", size, (n * 10 % 255, 0, 0)).save(folder / f"{n:04d}.jpg")


@pytest.fixture
def otb_root(tmp_path, monkeypatch):
    root = tmp_path / "OTB100"
    _images(root / "Basket" / "img", [1, 2, 3])
    (root / "Basket" / "groundtruth_rect.txt").write_text("1,2,3,4\n2,3,4,5\n3,4,5,6\n")
    _images(root / "Jogging" / "img", [1, 2])
    (root / "Jogging" / "groundtruth_rect.1.txt").write_text("1\t2\t3\t4\n1\t2\t3\t4\n")
    (root / "Jogging" / "groundtruth_rect.2.txt").write_text("5 6 7 8\n5 6 7 8\n")
    _images(root / "David" / "img", range(1, 9))  # annotated on images 3..5 only
    (root / "David" / "groundtruth_rect.txt").write_text("1,1,2,2\n" * 3)
    monkeypatch.setitem(otb.FRAME_RANGES, "David", (3, 5))
    return root


def test_load_otb_targets_and_ranges(otb_root):
    seqs = {s.name: s for s in load_otb(otb_root)}
    assert sorted(seqs) == ["Basket", "David", "Jogging-1", "Jogging-2"]
    assert seqs["Jogging-2"].boxes.tolist() == [[5, 6, 7, 8]] * 2
    assert [p.name for p in seqs["David"].frames.paths] == ["0003.jpg", "0004.jpg", "0005.jpg"]
    assert seqs["Basket"].frames[1].size == (16, 12) and len(seqs["Basket"].frames[0:2]) == 2
    check_item("video", seqs["Basket"])
    assert [s.name for s in load_otb(otb_root, ["Jogging-1"])] == ["Jogging-1"]
    assert len(build_dataset("otb2015", str(otb_root), "test", kind="video")) == 4


def test_otb_hostile(otb_root, tmp_path):
    with pytest.raises(UserError, match="data.root"):
        load_otb(None)
    with pytest.raises(UserError, match="not a folder"):
        load_otb(tmp_path / "nope")
    with pytest.raises(UserError, match="no OTB sequences"):
        load_otb(otb_root / "Basket" / "img")
    with pytest.raises(UserError, match="not under"):
        load_otb(otb_root, ["Basketball"])
    (otb_root / "Basket" / "groundtruth_rect.txt").write_text("1,2,3,4\n")
    with pytest.raises(UserError, match="1 boxes .* but 3 images"):
        load_otb(otb_root, ["Basket"])
    (otb_root / "Jogging" / "img" / "0002.jpg").write_bytes(b"\xff\xd8 truncated")
    frames = load_otb(otb_root, ["Jogging-1"])[0].frames
    with pytest.raises(UserError, match="corrupt or truncated"):
        frames[1]


def test_write_shapes_otb_reuse_and_refusal(tmp_path):
    root = write_shapes_otb(tmp_path / "otb", 2, 7, n_frames=4)
    seqs = load_otb(root)
    assert [s.name for s in seqs] == ["shapes-video-0007", "shapes-video-0008"] and len(seqs[0].frames) == 4
    stamp = (root / "shapes-video-0007" / "img" / "0001.jpg").stat().st_mtime_ns
    assert write_shapes_otb(tmp_path / "otb", 2, 7, n_frames=4) == root  # re-used, not rewritten
    assert (root / "shapes-video-0007" / "img" / "0001.jpg").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="not written by this generator"):
        write_shapes_otb(tmp_path / "otb", 2, 8, n_frames=4)
    (tmp_path / "mine").mkdir()
    with pytest.raises(UserError, match="not written by this generator"):
        write_shapes_otb(tmp_path / "mine", 1, 0)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.fixture
def davis_root(tmp_path):
    return write_shapes_davis(tmp_path / "DAVIS", 2, 3, n_frames=3, size=(48, 64))


def test_load_davis(davis_root):
    seqs = load_davis(davis_root, "val")
    assert [s.name for s in seqs] == ["shapes-video-0003", "shapes-video-0004"]
    labels = seqs[0].annotations[0]
    assert labels.dtype == np.uint8 and labels.shape == (48, 64) and set(np.unique(labels)) <= {0, 1, 2, 3}
    with Image.open(seqs[0].annotations.paths[0]) as image:
        assert image.mode == "P"
    check_item("video", seqs[0])
    assert len(build_dataset("davis2017", str(davis_root), "val", kind="video")) == 2


def test_davis_hostile(davis_root, tmp_path):
    with pytest.raises(UserError, match="data.root"):
        load_davis("")
    with pytest.raises(UserError, match="split"):
        load_davis(davis_root, "test")
    with pytest.raises(UserError, match="does not exist"):
        load_davis(davis_root, "train")
    with pytest.raises(UserError, match="not in the val split"):
        load_davis(davis_root, "val", ["bear"])
    (davis_root / "ImageSets" / "2017" / "val.txt").write_text("../../etc\n")
    with pytest.raises(UserError, match="not a folder name"):
        load_davis(davis_root, "val")
    (davis_root / "ImageSets" / "2017" / "val.txt").write_text("shapes-video-0003\n")
    first = davis_root / "Annotations" / "480p" / "shapes-video-0003" / "00000.png"
    Image.new("RGB", (64, 48)).save(first)
    with pytest.raises(UserError, match="palette"):
        read_label_png(first)
    (davis_root / "Annotations" / "480p" / "shapes-video-0003" / "00002.png").unlink()
    with pytest.raises(UserError, match="do not match"):
        load_davis(davis_root, "val")


def test_label_png_round_trip(tmp_path):
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_label_png(tmp_path / "a.png", labels)
    assert np.array_equal(read_label_png(tmp_path / "a.png"), labels)
    with pytest.raises(UserError, match="does not exist"):
        read_label_png(tmp_path / "b.png")
