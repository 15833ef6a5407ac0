"""``mec-eval demo``: the whole pipeline on embedded data, no download.

Pre-trains MEC and a baseline (BYOL, the same network with the order-1 cosine loss) on the
embedded real handwritten digits, evaluates them and a random initialisation with kNN, the fast
linear probe, semi-supervised fine-tuning on 10 % of the labels and the ssl-transfer linear
protocol, runs the five UniTrack video tasks on the synthetic shapes videos (their CPU variants,
labelled "synthetic cpu-small, shapes-video" in the report: not the paper's OTB / DAVIS / MOT data), and
writes the report (HTML with the image and video radar charts, PDF, CSV, Markdown) with the MEC
paper's published rows beside it. Re-running resumes and skips finished work.
"""
from __future__ import annotations

import time
from pathlib import Path

from mec_eval.config import load_pretrain_config
from mec_eval.log import JsonLogger
from mec_eval.pretrain.main import pretrain
from mec_eval.report import build_report
from mec_eval.tasks import expand_task, run_task

METHODS = ("mec", "byol")
# Enough image tasks for a radar chart (>= 3 axes). The paper's LARS probe (`linear`) is left out:
# on 1,257 images its 100 epochs are 100 iterations, too few for LARS steps (see README).
EVAL_TASKS = ("knn", "linear-fast", "semi-10pct", "transfer-linear")
EVAL_DATA = ("digits",)
# The video radar: UniTrack's five tasks on synthetic shapes videos (the tasks' labelled cpu-small variants).
VIDEO_TASKS = ("sot-cpu-small", "vos-cpu-small", "mot-cpu-small", "mots-cpu-small", "posetrack-cpu-small")
# --quick: fewer synthetic videos and layer 3 only (the full demo reports both layers, as MEC Table 4).
_QUICK_VIDEO = {"sot-cpu-small": ["data.shapes.videos=2"], "vos-cpu-small": ["data.shapes.videos=2"],
                "mot-cpu-small": ["data.synthetic_videos=2"], "mots-cpu-small": ["data.synthetic_videos=2"],
                "posetrack-cpu-small": ["data.synthetic_videos=2"]}
VIDEO_OVERRIDES = {"full": {}, "quick": {task: [*o, "model.layer=3"] for task, o in _QUICK_VIDEO.items()}}
# Pre-training overrides of the full demo (~8.5 min on 2 CPU cores, evaluation included) and of
# --quick (~3 min; smaller batches give more iterations for the same compute).
SCHEDULES = {"full": ["optim.epochs=40"], "quick": ["optim.epochs=6", "optim.batch_size=64"]}


def demo(out: str | Path = "demo_out", quick: bool = False, quiet: bool = False) -> Path:
    """Run the demo into ``out``; returns the report path."""
    out = Path(out)
    logger = JsonLogger(out / "demo.jsonl", quiet=quiet)
    mode = "quick" if quick else "full"
    t0 = time.perf_counter()
    checkpoints = ["random:resnet_tiny"]
    for method in METHODS:
        cfg = load_pretrain_config("digits", [f"loss.name={method}", *SCHEDULES[mode]])
        logger.info(f"pre-training {method} on digits for {cfg.optim.epochs} epochs")
        checkpoints.append(str(pretrain(cfg, out / "pretrain" / f"{method}-{mode}", quiet=quiet)))
    runs = out / "runs"
    for ckpt in checkpoints:
        for dataset in EVAL_DATA:
            for task in EVAL_TASKS:
                run_task(task, ckpt, runs, [f"data.name={dataset}"], quiet=quiet)
        for task in VIDEO_TASKS:  # model.layer=0 (full) is two runs, layer 3 and layer 4, as `mec-eval run` makes
            for overrides in expand_task(task, VIDEO_OVERRIDES[mode].get(task, [])):
                run_task(task, ckpt, runs, overrides, quiet=quiet)
    report = build_report([runs], out / "report.html", pdf=True, with_published=True, csv_dir=out / "report_csv",
                          markdown=out / "report.md", title=f"mec-eval demo ({mode})").html
    logger.log(event="demo_done", mode=mode, seconds=round(time.perf_counter() - t0, 1), report=str(report))
    return report
