"""MOT16 / MOTS20 / PoseTrack 2018 readers on fixtures in the real layouts, and hostile inputs."""
import json

import numpy as np
import pytest
from PIL import Image

from mec_eval.data.mot import VideoSequences, decode_masks, load_mot_sequence, load_mots_sequence
from mec_eval.data.posetrack import PoseTrackSequences
from mec_eval.utils import UserError

SEQINFO = "[Sequence]\nname={n}\nimDir=img1\nframeRate=30\nseqLength=2\nimWidth=8\nimHeight=6\nimExt=.jpg\n"


def _rle(mask):
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def _mot_seq(root, name="MOT16-02", det="1,-1,1,1,3,2,0.9,-1,-1,-1\n2,-1,2,1,3,2,0.8,-1,-1,-1\n", mots=False):
    seq = root / "train" / name
    (seq / "img1").mkdir(parents=True)
    (seq / "gt").mkdir()
    (seq / "det").mkdir()
    for t in (1, 2):
        Image.new("RGB", (8, 6)).save(seq / "img1" / f"{t:06d}.jpg")
    (seq / "seqinfo.ini").write_text(SEQINFO.format(n=name))
    if mots:
        mask = np.zeros((6, 8), bool)
        mask[1:3, 2:5] = True
        line = f"1 2001 2 6 8 {_rle(mask)}\n"
        (seq / "gt" / "gt.txt").write_text(line)
        (seq / "det" / "det.txt").write_text(line.replace(" 2001 ", " 1 "))
    else:
        (seq / "gt" / "gt.txt").write_text("1,1,1,1,3,2,1,1,1.0\n2,1,2,1,3,2,1,1,0.5\n")
        (seq / "det" / "det.txt").write_text(det)
    return seq


def test_mot16_reader(tmp_path):
    _mot_seq(tmp_path)
    data = VideoSequences(tmp_path, "mot")
    seq = data[0]
    assert seq.info.length == 2 and (seq.info.width, seq.info.height) == (8, 6)
    assert seq.annotations[0]["det"][:, 6].tolist() == [0.9] and seq.annotations[1]["gt"][0, 8] == 0.5
    assert seq.frames[1].size == (8, 6)


def test_mots20_reader_and_instances_txt(tmp_path):
    seq_dir = _mot_seq(tmp_path, "MOTS20-02", mots=True)
    seq = load_mots_sequence(seq_dir)
    mask = decode_masks(seq.annotations[0]["gt"], 6, 8)[0]
    assert mask.sum() == 6 and mask[1:3, 2:5].all()
    # the MOTS20 release layout: instances_txt/<seq>.txt instead of <seq>/gt/gt.txt
    (tmp_path / "instances_txt").mkdir()
    (seq_dir / "gt" / "gt.txt").rename(tmp_path / "instances_txt" / "MOTS20-02.txt")
    assert load_mots_sequence(seq_dir).annotations[0]["gt"][0].obj_id == 2001


@pytest.mark.parametrize("det, match", [
    ("1,-1,1,1,3\n", "line 1: expected 'frame, id, x, y, w, h"),                # too few fields
    ("1,-1,a,1,3,2,0.9\n", "line 1: expected"),                                # non-numeric
    ("1,-1,1,1,3,2,0.9\n9,-1,1,1,3,2,0.9\n", "line 2: frame 9 outside 1..2"),  # beyond seqLength
    ("1,-1,1,1,-3,2,0.9\n", "w, h >= 0"),                                      # negative size
])
def test_corrupt_mot_line_names_file_and_line(tmp_path, det, match):
    seq = _mot_seq(tmp_path, det=det)
    with pytest.raises(UserError, match=match) as err:
        load_mot_sequence(seq)
    assert "det.txt" in str(err.value) and "\n" not in str(err.value)


def test_wrong_root_and_missing_seqinfo(tmp_path):
    with pytest.raises(UserError, match="expected ROOT/train/<seq>/") as err:
        VideoSequences(tmp_path, "mot")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="is not a folder"):
        VideoSequences(tmp_path / "nowhere", "mot")
    seq = _mot_seq(tmp_path)
    (seq / "seqinfo.ini").unlink()
    with pytest.raises(UserError, match="seqinfo.ini is missing"):
        load_mot_sequence(seq)
    (seq / "seqinfo.ini").write_text("[Sequence]\nseqLength=two\nimWidth=8\nimHeight=6\n")
    with pytest.raises(UserError, match="not a MOTChallenge seqinfo.ini"):
        load_mot_sequence(seq)


def test_odd_sequence_names(tmp_path):
    _mot_seq(tmp_path, "seq with spaces-ü")
    assert VideoSequences(tmp_path, "mot")[0].name == "seq with spaces-ü"
    with pytest.raises(UserError, match="has no sequence 'MOT16-99'"):
        VideoSequences(tmp_path, "mot", names=["MOT16-99"])


def test_truncated_rle_is_one_line(tmp_path):
    seq = _mot_seq(tmp_path, "MOTS20-05", mots=True)
    line = (seq / "det" / "det.txt").read_text().strip()
    (seq / "det" / "det.txt").write_text(line[:-3] + "\n1 2 2 6 8\n")
    with pytest.raises(UserError, match="det.txt line") as err:
        load_mots_sequence(seq)
    assert "\n" not in str(err.value)


def _posetrack(root, ann):
    (root / "annotations" / "val").mkdir(parents=True)
    (root / "images" / "val" / "s1").mkdir(parents=True)
    Image.new("RGB", (8, 6)).save(root / "images" / "val" / "s1" / "000000.jpg")
    images = [{"id": 5, "file_name": "images/val/s1/000000.jpg", "frame_id": 0, "is_labeled": True}]
    (root / "annotations" / "val" / "s1.json").write_text(json.dumps({"images": images, "annotations": ann}))


def test_posetrack_reader_and_hostile(tmp_path):
    kp = np.ones((17, 3)).ravel().tolist()
    _posetrack(tmp_path, [{"image_id": 5, "track_id": 3, "keypoints": kp, "bbox_head": [0, 0, 2, 2]}])
    seq = PoseTrackSequences(tmp_path)[0]
    assert seq.annotations[0]["gt"][0].track_id == 3 and seq.frames[0].size == (8, 6)
    with pytest.raises(UserError, match="has no annotations/val folder; expected ROOT/annotations/val"):
        PoseTrackSequences(tmp_path / "images")
    bad = tmp_path / "bad"
    _posetrack(bad, [{"image_id": 5, "track_id": 3, "keypoints": kp[:-3]}])
    with pytest.raises(UserError, match="annotation 0 needs 'keypoints' of 17x3"):
        PoseTrackSequences(bad)[0]
    (bad / "annotations" / "val" / "s1.json").write_text('{"images": [')
    with pytest.raises(UserError, match="not a readable JSON"):
        PoseTrackSequences(bad)[0]
