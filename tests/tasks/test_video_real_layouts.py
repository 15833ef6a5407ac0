"""`mec-eval run` of the five video tasks (the protocol YAMLs, not the cpu-small ones) on fixtures in the real
on-disk layouts: OTB-2015, DAVIS-2017, MOT16, MOTS20 and PoseTrack 2018, written by the shapes generators.

Both layers through expand(), frames/s in the log and in result.json, a re-run that redoes only the sequence
whose record is gone (counted), a wrong root or a corrupt file as one line and exit 2, ViT checkpoints refused.
"""
import json
import shutil

import pytest

from mec_eval.cli import main
from mec_eval.data import shapes_tracking
from mec_eval.data.davis import write_shapes_davis
from mec_eval.data.otb import write_shapes_otb

SIZE = (48, 64)  # height, width: tiny frames, a few seconds per task with resnet_tiny
SEQS = ["shapes-video-0000", "shapes-video-0001"]
DATASETS = {"sot": "otb2015", "vos": "davis2017", "mot": "mot16", "mots": "mots20", "posetrack": "posetrack2018"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    video = {"n_frames": 4, "size": SIZE, "n_objects": 2}
    spec = shapes_tracking.VideoSpec(n_videos=2, n_frames=4, size=SIZE, n_objects=2)
    return {"sot": write_shapes_otb(base / "OTB100", 2, 0, **video),
            "vos": write_shapes_davis(base / "DAVIS", 2, 0, **video),
            "mot": shapes_tracking.write_shapes_mot(base / "MOT16", spec),
            "mots": shapes_tracking.write_shapes_mots(base / "MOTS20", spec),
            "posetrack": shapes_tracking.write_shapes_posetrack(base / "PoseTrack2018", spec)}


def _overrides(task, root):
    """data.root plus what keeps the protocol YAML small on CPU (window / letterbox size, our sequence names)."""
    small = {"sot": ["sot.search_size=48", "sot.template=0"], "vos": [],
             "mot": ["data.sequences=[]", "data.image_size=[64,48]", "data.min_box_area=0"],
             "mots": ["data.sequences=[]", "data.image_size=[64,48]"],
             "posetrack": [f"data.detections={root / 'poses'}", "data.image_size=[64,48]"]}
    return [f"data.root={root}", *small[task]]


def _per_sequence_hook(task, monkeypatch, calls):
    """Count the calls of the function that processes one sequence (the unit a re-run may redo)."""
    if task == "sot":
        from mec_eval.tasks import sot as module
        name, owner = "track_sequence", module
    elif task == "vos":
        from mec_eval.tasks import vos as module
        name, owner = "segment_sequence", module
    else:
        from mec_eval.tasks.mot import TrackingTask as owner
        name = "track_sequence"
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *a, **k: calls.append(1) or real(*a, **k))


def _record(task, folder, seq):
    """The file whose presence marks ``seq`` finished in a run folder."""
    return folder / ("sequences" if task in ("sot", "vos") else "timing") / f"{seq}.json"


# 5-15 s each on a shared 2-core CPU; SOT (7 backbone passes a frame) up to 25 s
@pytest.mark.parametrize("task", [pytest.param("sot", marks=pytest.mark.slow), "vos", "mot", "mots", "posetrack"])
def test_run_on_the_real_layout_both_layers_fps_and_resume(task, roots, tmp_path, capsys, monkeypatch,
                                                           validate_result):
    runs, overrides = tmp_path / "runs", _overrides(task, roots[task])
    calls = []
    _per_sequence_hook(task, monkeypatch, calls)
    assert main(["run", "--task", task, "--ckpt", "random:resnet_tiny", "--out", str(runs), *overrides]) == 0
    log = capsys.readouterr().err
    assert len(calls) == 4  # 2 sequences x 2 layers
    paths = sorted(runs.joinpath(task).rglob("result.json"))
    results = {r["extra"]["layer"]: (p, r) for p, r in ((p, validate_result(p)) for p in paths)}
    assert sorted(results) == [3, 4]
    for path, result in results.values():
        assert result["dataset"] == DATASETS[task] and result["protocol"] == "paper"
        assert result["extra"]["fps"] > 0
    # frames/s per sequence in the log: SOT / VOS as JSON-line records (fps=...), the trackers as text
    per_sequence = [line for line in log.splitlines() if ("fps=" in line or "frames/s" in line)
                    and any(seq in line for seq in SEQS)]
    assert len(per_sequence) == 4, log

    # Sequence 2 of layer 3 cut off before its record was written: the re-run redoes it alone.
    path, first = results[3]
    _record(task, path.parent, SEQS[1]).unlink()
    path.unlink()
    calls.clear()
    assert main(["run", "--quiet", "--task", task, "--ckpt", "random:resnet_tiny", "--out", str(runs), *overrides,
                 "model.layer=3"]) == 0
    assert len(calls) == 1
    again = validate_result(path)
    assert again["metrics"] == pytest.approx(first["metrics"])
    # and a re-queued run that finds every record redoes nothing
    path.unlink()
    calls.clear()
    assert main(["run", "--quiet", "--task", task, "--ckpt", "random:resnet_tiny", "--out", str(runs), *overrides,
                 "model.layer=3"]) == 0
    assert calls == [] and validate_result(path)["metrics"] == pytest.approx(first["metrics"])


@pytest.mark.parametrize("task,words", [
    ("sot", "groundtruth_rect.txt"), ("vos", "ImageSets/2017"), ("mot", "seqinfo.ini"), ("mots", "seqinfo.ini"),
    ("posetrack", "annotations/val/<seq>.json")])
def test_missing_root_names_the_expected_layout(task, words, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    overrides = [f"data.detections={missing}"] if task == "posetrack" else []
    code = main(["run", "--quiet", "--task", task, "--ckpt", "random:resnet_tiny", "--out", str(tmp_path / "runs"),
                 f"data.root={missing}", "model.layer=3", *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not list((tmp_path / "runs").rglob("result.json"))


def _corrupt(task, root):
    """Damage one file the task reads; returns words its one-line error must contain."""
    seq = SEQS[0]
    if task == "sot-rect":
        (root / seq / "groundtruth_rect.txt").write_text("1,2,3,4\na,b,c,d\n")
        return "line 2"
    if task == "sot-frame":
        (root / seq / "img" / "0002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        return "0002.jpg"
    if task == "vos":
        (root / "Annotations" / "480p" / seq / "00000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        return "00000.png"
    if task == "mot":
        (root / "train" / seq / "det" / "det.txt").write_text("1,-1,1,1,x,2,0.9\n")
        return "line 1"
    if task == "mots":
        (root / "train" / seq / "det" / "det.txt").write_text("1 1 2 48 64 not-an-rle\n")
        return "line 1"
    (root / "poses" / f"{seq}.json").write_text("{not json")
    return "JSON"


@pytest.mark.parametrize("case", ["sot-rect", "sot-frame", "vos", "mot", "mots", "posetrack"])
def test_a_corrupt_file_is_one_line_and_exit_2(case, roots, tmp_path, capsys):
    task = case.split("-")[0]
    root = shutil.copytree(roots[task], tmp_path / "data")
    words = _corrupt(case, root)
    code = main(["run", "--quiet", "--task", task, "--ckpt", "random:resnet_tiny", "--out", str(tmp_path / "runs"),
                 *_overrides(task, root), "model.layer=3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not list((tmp_path / "runs").rglob("result.json"))


@pytest.mark.parametrize("task", list(DATASETS))
def test_vit_checkpoints_are_refused_in_one_line(task, roots, tmp_path, capsys):
    code = main(["run", "--quiet", "--task", task, "--ckpt", "random:vit_tiny", "--out", str(tmp_path / "runs"),
                 *_overrides(task, roots[task]), "model.layer=3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "ResNet" in err and "ViT" in err, err
    assert not list((tmp_path / "runs").rglob("result.json"))


def test_fixture_layouts_are_the_real_ones(roots):
    """The fixtures are what the real datasets look like on disk (the run tests read them as such)."""
    assert (roots["sot"] / SEQS[0] / "img" / "0001.jpg").is_file()
    assert (roots["vos"] / "ImageSets" / "2017" / "val.txt").read_text().split() == SEQS
    assert (roots["vos"] / "Annotations" / "480p" / SEQS[0] / "00000.png").is_file()
    for task in ("mot", "mots"):
        seq = roots[task] / "train" / SEQS[0]
        assert (seq / "seqinfo.ini").is_file() and (seq / "gt" / "gt.txt").is_file()
        assert (seq / "det" / "det.txt").is_file() and (seq / "img1" / "000001.jpg").is_file()
    gt = json.loads((roots["posetrack"] / "annotations" / "val" / f"{SEQS[0]}.json").read_text())
    assert {"images", "annotations"} <= set(gt) and len(gt["annotations"][0]["keypoints"]) == 51
