"""TrackEval scores vs motmetrics and its published TUD numbers (motmetrics tests/test_metrics.py)."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from mec_eval.metrics.mot import evaluate_mot, motmetrics_summary
from mec_eval.utils import UserError

mm = pytest.importorskip("motmetrics")
DATA = Path(mm.__file__).parent / "data"
# motmetrics 1.4.0 tests/test_metrics.py test_motchallenge_files: idf1, mota, motp (distance), IDs
PUBLISHED = {"TUD-Campus": (0.557659, 0.526462, 0.277201, 7), "TUD-Stadtmitte": (0.644619, 0.564014, 0.345904, 7)}


def _layout(tmp_path):
    for seq in PUBLISHED:
        (tmp_path / "gt" / seq / "gt").mkdir(parents=True)
        (tmp_path / "res").mkdir(exist_ok=True)
        shutil.copy(DATA / seq / "gt.txt", tmp_path / "gt" / seq / "gt" / "gt.txt")
        shutil.copy(DATA / seq / "test.txt", tmp_path / "res" / f"{seq}.txt")
        n = int(max(np.loadtxt(DATA / seq / f, delimiter=",")[:, 0].max() for f in ("gt.txt", "test.txt")))
        (tmp_path / "gt" / seq / "seqinfo.ini").write_text(f"[Sequence]\nname={seq}\nseqLength={n}\n")
    return tmp_path / "gt", tmp_path / "res"


def test_trackeval_matches_motmetrics_and_published_tud_numbers(tmp_path):
    gt, res = _layout(tmp_path)
    scores = evaluate_mot(gt, res, benchmark="MOT15")
    for seq, (idf1, mota, motp_dist, ids) in PUBLISHED.items():
        ours, ref = scores["per_sequence"][seq], motmetrics_summary(gt / seq / "gt" / "gt.txt", res / f"{seq}.txt")
        assert ours["idf1"] == pytest.approx(100 * idf1, abs=0.01) == pytest.approx(ref["idf1"], abs=0.01)
        assert ours["mota"] == pytest.approx(100 * mota, abs=0.01) == pytest.approx(ref["mota"], abs=0.01)
        assert ours["motp"] == pytest.approx(100 * (1 - motp_dist), abs=0.01)
        assert ours["id_switches"] == ids == ref["id_switches"]
    assert scores["id_switches"] == 14 and scores["idf1"] == pytest.approx(62.4296, abs=0.01)


def test_hand_made_case_with_one_switch(tmp_path):
    seq = tmp_path / "gt" / "S"
    (seq / "gt").mkdir(parents=True)
    (tmp_path / "res").mkdir()
    (seq / "seqinfo.ini").write_text("[Sequence]\nseqLength=4\n")
    (seq / "gt" / "gt.txt").write_text("".join(f"{t},1,0,0,10,10,1,1,1\n" for t in range(1, 5)))
    # the tracker switches id after frame 2: 1 switch, IDF1 = 2 * 2 / (4 + 4) = 50 %, MOTA = 1 - 1/4
    (tmp_path / "res" / "S.txt").write_text("".join(f"{t},{1 if t <= 2 else 2},0,0,10,10,1,-1,-1,-1\n"
                                                    for t in range(1, 5)))
    scores = evaluate_mot(tmp_path / "gt", tmp_path / "res", benchmark="MOT16")
    assert scores["id_switches"] == 1
    assert scores["idf1"] == pytest.approx(50.0) and scores["mota"] == pytest.approx(75.0)


def test_mot15_style_gt_under_mot16_and_corrupt_lines_are_user_errors(tmp_path):
    gt, res = _layout(tmp_path)
    with pytest.raises(UserError, match="MOT15"):
        evaluate_mot(gt, res, benchmark="MOT16")
    (res / "TUD-Campus.txt").write_text("1,2,x,4\n")
    with pytest.raises(UserError, match="line 1"):
        evaluate_mot(gt, res, benchmark="MOT15")
    with pytest.raises(UserError, match="does not exist"):
        evaluate_mot(tmp_path / "nope", res)


def test_auto_benchmark_picks_mot15_for_2d_files_and_mot16_otherwise(tmp_path):
    gt, res = _layout(tmp_path)
    auto, mot15 = evaluate_mot(gt, res, benchmark="auto"), evaluate_mot(gt, res, benchmark="MOT15")
    assert auto["benchmark"] == "MOT15" and auto["idf1"] == mot15["idf1"] and auto["mota"] == mot15["mota"]
    for seq in PUBLISHED:  # the same boxes with class 1 and visibility 1: MOT16 preprocessing
        path = gt / seq / "gt" / "gt.txt"
        rows = np.loadtxt(path, delimiter=",", ndmin=2)
        rows[:, 6:9] = 1
        np.savetxt(path, rows[:, :9], delimiter=",", fmt="%g")
    labelled = evaluate_mot(gt, res, benchmark="auto")
    assert labelled["benchmark"] == "MOT16" and labelled["id_switches"] == evaluate_mot(gt, res)["id_switches"]
    with pytest.raises(UserError, match="or auto"):
        evaluate_mot(gt, res, benchmark="MOT99")
