"""``mec-eval score``: outputs of another tool scored by the tasks' evaluators, written as a result.json."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
