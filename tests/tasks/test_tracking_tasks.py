"""End to end: `mec-eval run --task mot|mots|posetrack-cpu-small` through the CLI, both layers, resume, bad input."""
import json

import numpy as np
import pytest
from PIL import Image

from mec_eval.cli import main

# Two tiny videos of 6 frames at 64x48: a few seconds per task on CPU.
TINY = ["data.synthetic_videos=2", "data.synthetic_frames=6", "data.image_size=[64,48]"]
TASKS = ["mot-cpu-small", "mots-cpu-small", "posetrack-cpu-small"]
METRICS = {"mot-cpu-small": {"idf1", "hota", "mota", "id_switches"},
           "mots-cpu-small": {"idf1", "hota", "mota", "id_switches"},
           "posetrack-cpu-small": {"idf1", "id_switches", "mota"}}


def _results(root, task):
    return sorted(root.joinpath(task).rglob("result.json"))


@pytest.mark.parametrize("task", TASKS)
def test_run_both_layers_and_resume(tmp_path, validate_result, task, capsys):
    assert main(["run", "--quiet", "--task", task, "--ckpt", "random:resnet_tiny", "--out", str(tmp_path), *TINY]) == 0
    paths = _results(tmp_path, task)
    results = [validate_result(p) for p in paths]
    assert sorted(r["extra"]["layer"] for r in results) == [3, 4]  # model.layer=0 expands to layer3 and layer4
    for result in results:
        assert set(result["metrics"]) == METRICS[task]
        assert all(0 <= result["metrics"][k] <= 100 for k in ("idf1",))
        fps = result["extra"]["frames_per_s"]
        assert len(fps) == 2 and all(v > 0 for v in fps.values())
        assert result["extra"]["resumed_sequences"] == []
    # A re-queued run (--force: result.json is re-made) re-uses every finished sequence's tracks.
    layer3 = next(p for p, r in zip(paths, results) if r["extra"]["layer"] == 3)
    tracks = sorted((layer3.parent / "tracks").iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in tracks}
    assert main(["run", "--quiet", "--force", "--task", task, "--ckpt", "random:resnet_tiny", "--out", str(tmp_path),
                 *TINY, "model.layer=3"]) == 0
    again = validate_result(layer3)
    assert len(again["extra"]["resumed_sequences"]) == 2
    assert {p.name: p.stat().st_mtime_ns for p in sorted((layer3.parent / "tracks").iterdir())} == before
    assert again["metrics"] == next(r for r in results if r["extra"]["layer"] == 3)["metrics"]


@pytest.mark.parametrize("override", ["model.layer=5", "association.match_thresh=-1", "data.synthetic_objects=99",
                                      "data.synthetic_crossing_miss=2", "association.roi_size=[0,10]",
                                      "data.synthetic_palette=$\\alpha$", "data.synthetic_distractors=17",
                                      "data.synthetic_distractors=two",
                                      "data.synthetic_palette_jitter=65", "data.synthetic_palette_jitter=-1",
                                      "data.synthetic_palette_jitter=$x$"])
def test_bad_override_exits_2_with_one_line(tmp_path, capsys, override):
    code = main(["run", "--quiet", "--task", "mot-cpu-small", "--ckpt", "random:resnet_tiny", "--out", str(tmp_path),
                 *TINY, override])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and override.split("=")[0].split(".")[-1] in err
    assert not _results(tmp_path, "mot-cpu-small")


def test_wrong_dataset_root_exits_2(tmp_path, capsys):
    code = main(["run", "--quiet", "--task", "mot", "--ckpt", "random:resnet_tiny", "--out", str(tmp_path / "runs"),
                 f"data.root={tmp_path}", "model.layer=3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "seqinfo.ini" in err


def test_synthetic_spec_changes_the_cache_folder(tmp_path):
    for frames in (4, 5):
        assert main(["run", "--quiet", "--task", "mot-cpu-small", "--ckpt", "random:resnet_tiny", "--out",
                     str(tmp_path), "data.synthetic_videos=1", f"data.synthetic_frames={frames}",
                     "data.image_size=[64,48]", "model.layer=3"]) == 0
    folders = sorted((tmp_path / ".cache" / "shapes-video").iterdir())
    assert len(folders) == 2
    lengths = {json.loads((f / ".complete").read_text())["n_frames"] for f in folders}
    assert lengths == {4, 5}


def test_synthetic_nuisances_reach_the_written_videos(tmp_path):
    """``synthetic_palette`` / ``synthetic_distractors`` are the videos' own: the frames of the hard set differ
    from the default set's only where the colours and the clutter do, the annotations are the same."""
    from mec_eval.data.shapes_video import make_videos

    common = ["data.synthetic_videos=1", "data.synthetic_frames=3", "data.image_size=[64,48]", "model.layer=3"]
    for extra in (["data.synthetic_palette=distinct", "data.synthetic_distractors=0"],
                  ["data.synthetic_palette=shared", "data.synthetic_distractors=4"]):
        assert main(["run", "--quiet", "--task", "mot-cpu-small", "--ckpt", "random:resnet_tiny", "--out",
                     str(tmp_path), *common, *extra]) == 0
    folders = sorted((tmp_path / ".cache" / "shapes-video").iterdir())
    specs = {json.loads((f / ".complete").read_text())["palette"]: f for f in folders}
    assert set(specs) == {"distinct", "shared"}
    hard = json.loads((specs["shared"] / ".complete").read_text())
    assert hard["distractors"] == 4
    expected = make_videos(1, 0, n_frames=3, size=(48, 64), n_objects=3, palette="shared", distractors=4)[0]
    seq = next((specs["shared"] / "train").iterdir())
    first = np.asarray(Image.open(seq / "img1" / "000001.jpg"), dtype=float)
    default = make_videos(1, 0, n_frames=3, size=(48, 64), n_objects=3)[0]
    error_hard, error_default = (np.abs(first - v.frames[0]).mean() for v in (expected, default))
    assert error_hard < 8 and error_default > 3 * error_hard  # JPEG (quality 95) of the hard frame, not the default
    plain = next((specs["distinct"] / "train").iterdir())
    assert (seq / "gt" / "gt.txt").read_text() == (plain / "gt" / "gt.txt").read_text()


def test_config_ranges_match_the_generator():
    """The torch-free config copies of the shapes-video nuisance ranges are the generator's own."""
    from mec_eval.data import shapes_video
    from mec_eval.tasks.video_configs import (
        SHAPES_MAX_DISTRACTORS,
        SHAPES_MAX_PALETTE_JITTER,
        SHAPES_PALETTE_JITTER,
        SHAPES_PALETTES,
    )
    assert (SHAPES_PALETTES, SHAPES_MAX_DISTRACTORS) == (shapes_video.PALETTES, shapes_video.MAX_DISTRACTORS)
    assert (SHAPES_PALETTE_JITTER, SHAPES_MAX_PALETTE_JITTER) == (shapes_video.SHARED_JITTER,
                                                                  shapes_video.MAX_PALETTE_JITTER)
