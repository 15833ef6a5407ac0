"""AP after the cpu-small schedule from a pre-trained checkpoint vs random initialisation (issue 10's CPU note).

Runs ``voc07-cpu-small`` (and ``coco-cpu-small`` with ``--coco``) through the task runner for each
checkpoint, same seed and schedule, on the held-out shapes test split; prints AP / AP50 (bbox AP,
segm AP for COCO), the wall and process CPU time (all threads) of each run, the training seconds per iteration (from the run's
log.jsonl) and the CPU threads used. Cores shared with other work make the times upper bounds.

    python benchmarks/bench_detection_pretrain.py --ckpt /work/ckpts/shapes-mec/last.pt
    python benchmarks/bench_detection_pretrain.py --ckpt SUP.pt   # from benchmarks/supervised_reference.py
    python benchmarks/bench_detection_pretrain.py --ckpt CKPT --quick       # 10 iterations, 16 test images
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from mec_eval.tasks.runner import run_task

METRICS = {"voc07-cpu-small": ("AP50", "AP", "AP75"), "coco-cpu-small": ("bbox_AP50", "bbox_AP", "segm_AP")}


def _seconds_per_iteration(run_dir: Path) -> float:
    """Seconds between the first and the last logged training iteration, per iteration."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    steps = [(r["iteration"], r["time"]) for r in records if r.get("event") == "iteration"]
    (i0, t0), (i1, t1) = steps[0], steps[-1]
    return (t1 - t0) / max(i1 - i0, 1)


def one_run(task: str, ckpt: str, root: Path, overrides: list[str]) -> dict:
    began, cpu = time.perf_counter(), time.process_time()
    outcome = run_task(task, ckpt, root / "runs", [f"data.root={root / 'data'}", "run.device=cpu", *overrides],
                       force=True, quiet=True)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    result = json.loads(outcome.path.read_text())
    return {"task": task, "ckpt": ckpt, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "s_per_iter": round(_seconds_per_iteration(outcome.path.parent), 3),
            **{m: round(result["metrics"][m], 2) for m in METRICS[task]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="the pre-trained checkpoint (resnet_tiny)")
    parser.add_argument("--random", default="random:resnet_tiny", help="the random-initialisation baseline")
    parser.add_argument("--coco", action="store_true", help="also run coco-cpu-small (Mask R-CNN)")
    parser.add_argument("--quick", action="store_true", help="10 iterations on 16 test images (a smoke run)")
    parser.add_argument("--iterations", type=int, default=0,
                        help="a shorter schedule than the task's 300 (steps at 3/4 and 11/12 of it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--which", choices=("both", "pretrained", "random"), default="both",
                        help="run one side only (two processes can then run side by side)")
    parser.add_argument("--root", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    overrides = [f"run.seed={args.seed}"]
    if args.iterations:
        n = args.iterations
        overrides += [f"optim.iterations={n}", f"optim.steps=[{n * 3 // 4},{n * 11 // 12}]"]
    if args.quick:
        overrides += ["optim.iterations=10", "optim.steps=[8]", "optim.warmup_iters=2", "data.shapes_test=16",
                      "optim.log_every=1"]
    print(f"cpu: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}")
    tasks = ["voc07-cpu-small"] + (["coco-cpu-small"] if args.coco else [])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        for task in tasks:
            for ckpt in {"both": (args.ckpt, args.random), "pretrained": (args.ckpt,),
                         "random": (args.random,)}[args.which]:
                print(json.dumps(one_run(task, ckpt, root, overrides)), flush=True)


if __name__ == "__main__":
    main()
