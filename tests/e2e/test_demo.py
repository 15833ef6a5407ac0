"""`mec-eval demo` end to end with shortened schedules: its report holds the image radar chart of the
demo's own checkpoints, the published comparison, a PDF and the CSV/Markdown exports."""
from __future__ import annotations

import csv
import re

import pytest

from mec_eval.cli import main
from mec_eval.launch import demo as demo_module

# Shorter than --quick, same code path: 1 pre-training epoch of 2 steps, lighter protocol settings.
FAST_SCHEDULE = ["optim.epochs=1", "optim.batch_size=64", "run.max_steps_per_epoch=2",
                 "model.proj_hidden=128", "model.proj_dim=128", "model.pred_hidden=32"]
FAST_TASKS = {"semi-10pct": ["optim.epochs=2"], "transfer-linear": ["transfer.wd_count=3", "transfer.n_jobs=1"],
              "linear-fast": ["linear.wd_grid=[0.001,0.1]"],
              # one short synthetic video each (after --quick's own overrides, so these win)
              "sot-cpu-small": ["data.shapes.videos=1", "data.shapes.frames=6"],
              "vos-cpu-small": ["data.shapes.videos=1", "data.shapes.frames=6"],
              **{f"{t}-cpu-small": ["data.synthetic_videos=1", "data.synthetic_frames=8"]
                 for t in ("mot", "mots", "posetrack")}}


@pytest.mark.slow
def test_demo_report_has_the_image_and_video_radars_of_its_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(demo_module.SCHEDULES, "quick", FAST_SCHEDULE)
    real_run_task = demo_module.run_task
    monkeypatch.setattr(demo_module, "run_task", lambda task, ckpt, runs, overrides, **kw: real_run_task(
        task, ckpt, runs, [*overrides, *FAST_TASKS.get(task, [])], **kw))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 0
    html = (out / "report.html").read_text()
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    # Four image axes exist for the demo's own checkpoints (LIN fast, SEMI, kNN, T-LIN), and the five
    # video axes on the synthetic videos, named as such.
    own = html.index("Your checkpoints on other datasets or metrics")
    published = html.index("Among the published results")
    assert own < published  # the reader's results come first
    assert html.count("<svg") >= 2 and "LIN (fast, digits)" in html and "SEMI (10%, digits)" in html
    own_part = html[own:published]  # both radars of the demo's own checkpoints (the paper has no synthetic rows)
    assert "No chart" not in own_part and own_part.count("<svg") >= 2 and "Video tasks" in own_part
    assert "SOT (synthetic cpu-small, shapes-video)" in own_part
    assert not re.search(r"<(script|link)[^>]+(src|href)=", html)
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    with open(out / "report_csv" / "ranks.csv", newline="") as fh:
        ranks = [row for row in csv.DictReader(fh) if row["published"] == "False"]
    names = {row["checkpoint"] for row in ranks}
    assert names == {"random-resnet_tiny", "mec-quick-last", "byol-quick-last"}
    axes = {row["axis"] for row in ranks}
    assert axes >= {"LIN (fast, digits)", "SEMI (10%, digits)", "kNN (digits)"}
    assert {axis.split(" ")[0] for axis in axes} >= {"SOT", "VOS", "MOT", "MOTS", "PoseTrack"}
    video = [row for row in ranks if row["axis"].startswith(("SOT", "VOS", "MOT", "PoseTrack"))]
    assert {row["checkpoint"] for row in video} == names and all(row["rank"] for row in video)
    assert all(1 <= int(row["rank"]) <= 3 for row in ranks if row["rank"])
    assert "LIN (fast, digits)" in (out / "report.md").read_text()


@pytest.mark.parametrize("mode, layers", [("full", {"model.layer=3", "model.layer=4"}), ("quick", {"model.layer=3"})])
def test_demo_runs_every_video_task_per_layer_as_mec_eval_run_does(tmp_path, monkeypatch, mode, layers):
    calls = []
    monkeypatch.setattr(demo_module, "pretrain", lambda cfg, out, quiet: "random:resnet18")
    monkeypatch.setattr(demo_module, "run_task", lambda task, ckpt, runs, overrides, **kw: calls.append(
        (task, ckpt, tuple(overrides))))
    monkeypatch.setattr(demo_module, "build_report", lambda *a, **kw: type("Built", (), {"html": tmp_path / "r"}))
    demo_module.demo(tmp_path / "demo", quick=mode == "quick", quiet=True)
    for task in demo_module.VIDEO_TASKS:
        runs = [overrides for name, _, overrides in calls if name == task]
        assert len(runs) == 3 * len(layers)  # random + the two pre-trained checkpoints, each layer once
        assert {o for run in runs for o in run if o.startswith("model.layer=")} == layers
        assert all(sum(o.startswith("model.layer=") for o in run) == 1 for run in runs)
