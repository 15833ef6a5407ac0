"""``mec-eval score``: outputs of another tool scored by the tasks' evaluators, written as a result.json."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mec_eval.cli import main
from mec_eval.data.detection import VOCDetection, read_class_list
from mec_eval.data.shapes_detection import write_shapes_detection
from mec_eval.utils import sha256_file


@pytest.fixture(scope="module")
def devkit(tmp_path_factory):
    return write_shapes_detection(tmp_path_factory.mktemp("gt"), "voc", n_train=1, n_test=5, image_size=64)


def _perfect_voc(devkit: Path, path: Path, drop_last: bool = False) -> Path:
    """The test set's own boxes as COCO-results detections (every object of the last image dropped on request)."""
    data = VOCDetection(devkit, (("2007", "test"),), classes=read_class_list(devkit / "VOC2007"))
    entries = []
    for k in range(len(data) - int(drop_last)):
        target = data.annotations(k)
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            entries.append({"image_id": target["image_id"], "category_id": data.classes[label - 1],
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": 0.9})
    path.write_text(json.dumps(entries))
    return path


def test_score_writes_a_result_the_report_reads(devkit, tmp_path, capsys, validate_result):
    pred = _perfect_voc(devkit, tmp_path / "perfect.json")
    runs = tmp_path / "runs"
    assert main(["score", "--task", "voc07", "--gt", str(devkit), "--pred", str(pred), "--out", str(runs)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("AP=100.00 AP50=100.00 AP75=100.00")
    result = json.loads(Path(out[1]).read_text())
    validate_result(result)
    assert (result["task"], result["dataset"], result["protocol"]) == ("voc07", "shapes-detection", "scored")
    assert result["checkpoint"]["name"] == "perfect" and result["checkpoint"]["sha256"] == sha256_file(pred)
    assert Path(out[1]).parent.parent == runs / "voc07" / "perfect"
    # Scoring the same file again lands in the same folder; other detections in another.
    assert main(["score", "--task", "voc07", "--gt", str(devkit), "--pred", str(pred), "--out", str(runs)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == out[1]
    (tmp_path / "worse").mkdir()
    worse = _perfect_voc(devkit, tmp_path / "worse" / "perfect.json", drop_last=True)
    assert main(["score", "--task", "voc07", "--gt", str(devkit), "--pred", str(worse), "--out", str(runs)]) == 0
    second = capsys.readouterr().out.splitlines()
    assert second[1] != out[1] and float(second[0].split()[1].split("=")[1]) < 100


def test_score_without_out_prints_and_writes_nothing(devkit, tmp_path, capsys):
    pred = _perfect_voc(devkit, tmp_path / "p.json")
    assert main(["score", "--task", "voc0712", "--gt", str(devkit), "--pred", str(pred)]) == 0
    assert capsys.readouterr().out.startswith("AP=100.00")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


@pytest.mark.parametrize("argv, words", [
    (["--task", "linear"], "score handles voc07"),
    (["--task", "$x$<b>" + "x" * 300], "score handles"),
    (["--task", "mot", "--gt", "MISSING"], "--gt MISSING does not exist; --gt is a MOTChallenge split folder"),
    (["--task", "vos", "--pred", "MISSING"], "--pred MISSING does not exist; --pred is a folder of <seq>/<frame>.png"),
])
def test_bad_score_arguments_exit_2_in_one_line_without_torch(tmp_path, argv, words):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    defaults = {"--gt": str(tmp_path / "gt"), "--pred": str(tmp_path / "pred")}
    full = ["score", *argv]
    for flag, value in defaults.items():
        if flag not in argv:
            full += [flag, value]
    full = [str(tmp_path / a) if a == "MISSING" else a for a in full]
    code = ("import sys\nfrom mec_eval.cli import main\nrc = main(%r)\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', rc)") % (full,)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.stdout.split()[-2:] == ["NOTORCH", "2"], proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and words in err.replace(str(tmp_path) + "/", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt", "pred"]


def test_a_corrupt_prediction_file_is_one_line_and_writes_no_folder(devkit, tmp_path, capsys):
    pred = tmp_path / "bad.json"
    pred.write_text("[{not json")
    runs = tmp_path / "runs"
    assert main(["score", "--task", "voc07", "--gt", str(devkit), "--pred", str(pred), "--out", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "JSON" in err
    assert not any(p.is_file() for p in runs.rglob("*")) if runs.exists() else True


# -- tracker output files (mot, mots, posetrack, vos, sot): ground truth against itself, and one hand-made error --
# Two objects in 4 frames; the perturbed tracker gives object 2 a new id from frame 3 on. By hand: 1 ID switch,
# MOTA = 1 - 1/8; IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN) = 12 / 16 (best ids: 1 -> 1 for 4 frames, 2 -> 2 for 2);
# HOTA = sqrt(DetA * AssA) with DetA = 1 and AssA = (4 * 1 + 2 * 2/4 + 2 * 2/4) / 8 = 3/4.
SWITCHED = {"idf1": 75.0, "mota": 87.5, "id_switches": 1.0, "hota": 100 * 0.75 ** 0.5}
PERFECT = {"idf1": 100.0, "mota": 100.0, "id_switches": 0.0, "hota": 100.0}


def _score(task, gt, pred, runs, validate_result, capsys) -> dict:
    assert main(["score", "--task", task, "--gt", str(gt), "--pred", str(pred), "--out", str(runs)]) == 0
    path = Path(capsys.readouterr().out.splitlines()[1])
    result = validate_result(path)
    assert result["task"] == task and result["protocol"] == "scored"
    return result


def _mot_files(tmp_path, two_d=False):
    seq = tmp_path / "gt" / "S"
    (seq / "gt").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=S\nseqLength=4\n")
    tail = "1,-1,-1,-1" if two_d else "1,1,1"  # MOT15 2D rows: class / visibility -1
    (seq / "gt" / "gt.txt").write_text("".join(f"{t},{i},{50 * (i - 1)},0,10,10,{tail}\n"
                                               for t in range(1, 5) for i in (1, 2)))
    for name, switch in (("same", False), ("switched", True)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "S.txt").write_text("".join(
            f"{t},{3 if switch and i == 2 and t > 2 else i},{50 * (i - 1)},0,10,10,1,-1,-1,-1\n"
            for t in range(1, 5) for i in (1, 2)))
    return tmp_path / "gt"


@pytest.mark.parametrize("two_d", [False, True])
def test_score_mot_files(tmp_path, capsys, validate_result, two_d):
    gt = _mot_files(tmp_path, two_d)
    runs = tmp_path / "runs"
    for pred, expected in (("same", PERFECT), ("switched", SWITCHED)):
        result = _score("mot", gt, tmp_path / pred, runs, validate_result, capsys)
        assert result["metrics"] == pytest.approx(expected, abs=1e-6)
        assert result["extra"]["benchmark"] == ("MOT15" if two_d else "MOT16")  # chosen from the gt file


def _rle(mask):
    from pycocotools import mask as mask_utils
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def test_score_mots_files(tmp_path, capsys, validate_result):
    seq = tmp_path / "gt" / "S"
    (seq / "gt").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=S\nseqLength=4\nimWidth=50\nimHeight=20\n")
    masks = {}
    for i, x0 in ((1, 0), (2, 30)):
        masks[i] = np.zeros((20, 50), bool)
        masks[i][5:15, x0:x0 + 10] = True

    def rows(switch):
        return "".join(f"{t} {2000 + (3 if switch and i == 2 and t > 2 else i)} 2 20 50 {_rle(masks[i])}\n"
                       for t in range(1, 5) for i in (1, 2))
    (seq / "gt" / "gt.txt").write_text(rows(False))
    for name, switch in (("same", False), ("switched", True)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "S.txt").write_text(rows(switch))
    runs = tmp_path / "runs"
    for pred, expected in (("same", PERFECT), ("switched", SWITCHED)):
        assert _score("mots", tmp_path / "gt", tmp_path / pred, runs, validate_result, capsys)["metrics"] \
            == pytest.approx(expected, abs=1e-6)


def test_score_posetrack_files(tmp_path, capsys, validate_result):
    from mec_eval.metrics.posetrack import NUM_JOINTS

    keypoints = [[20.0 * j, 50.0, 1] for j in range(NUM_JOINTS)]  # 20 px apart: PCKh matches one joint only

    def write(folder, switch):
        images = [{"id": t, "file_name": f"images/val/S/{t:06d}.jpg", "frame_id": t, "is_labeled": True}
                  for t in range(4)]
        anns = [{"image_id": t, "track_id": 2 if switch and t >= 2 else 1, "keypoints": sum(keypoints, []),
                 "bbox_head": [0.0, 0.0, 10.0, 10.0], "score": 1.0} for t in range(4)]
        folder.mkdir()
        (folder / "S.json").write_text(json.dumps({"images": images, "annotations": anns}))
    write(tmp_path / "gt", False)
    write(tmp_path / "switched", True)
    runs = tmp_path / "runs"
    assert _score("posetrack", tmp_path / "gt", tmp_path / "gt", runs, validate_result, capsys)["metrics"] \
        == pytest.approx({"idf1": 100.0, "mota": 100.0, "id_switches": 0.0})
    # One person, 4 frames, a new id from frame 3: per joint 1 switch (poseval sums them over the joints),
    # MOTA 1 - 1/4, IDF1 2 * 2 / (4 + 4).
    assert _score("posetrack", tmp_path / "gt", tmp_path / "switched", runs, validate_result, capsys)["metrics"] \
        == pytest.approx({"idf1": 50.0, "mota": 75.0, "id_switches": float(NUM_JOINTS)})


def test_score_vos_files(tmp_path, capsys, validate_result):
    from mec_eval.data.davis import write_label_png

    square = np.zeros((40, 60), np.uint8)
    square[10:30, 20:40] = 1
    half = square.copy()
    half[10:20] = 0   # the middle frame keeps half of the object: J = 200 / 400
    for folder, middle in (("gt", square), ("half", half)):
        (tmp_path / folder / "S").mkdir(parents=True)
        for t, labels in enumerate((square, middle, square)):
            write_label_png(tmp_path / folder / "S" / f"{t:05d}.png", labels)
    runs = tmp_path / "runs"
    assert _score("vos", tmp_path / "gt", tmp_path / "gt", runs, validate_result, capsys)["metrics"] \
        == pytest.approx({"j_mean": 100.0, "f_mean": 100.0, "jf_mean": 100.0})
    # DAVIS leaves the first and last frames out: only the middle one counts.
    metrics = _score("vos", tmp_path / "gt", tmp_path / "half", runs, validate_result, capsys)["metrics"]
    assert metrics["j_mean"] == pytest.approx(50.0) and 0 < metrics["f_mean"] < 100
    assert metrics["jf_mean"] == pytest.approx((metrics["j_mean"] + metrics["f_mean"]) / 2)


def test_score_sot_files(tmp_path, capsys, validate_result):
    gt, shifted = tmp_path / "groundtruth_rect.txt", tmp_path / "shifted.txt"
    gt.write_text("10,10,20,20\n" * 5)
    shifted.write_text("20\t10\t20\t20\n" * 5)  # 10 px to the right: IoU 200 / 600 = 1/3, centre error 10 px
    runs = tmp_path / "runs"
    perfect = _score("sot", gt, gt, runs, validate_result, capsys)
    assert perfect["metrics"] == pytest.approx({"auc": 100 * 20 / 21})  # OTB: IoU > t, so t = 1 never passes
    # IoU 1/3 passes the thresholds 0, 0.05, ..., 0.30: 7 of 21; precision at 20 px: every frame.
    result = _score("sot", gt, shifted, runs, validate_result, capsys)
    assert result["metrics"] == pytest.approx({"auc": 100 * 7 / 21})
    assert result["extra"]["precision_20"] == pytest.approx(100.0)
