"""Wall time of every classification task with its default (published) settings on an embedded set.

Runs each task once for one checkpoint on ``--data`` (fresh runs folder and feature cache, so the
time includes feature extraction) and prints the primary metric and seconds. ``transfer-finetune``
(20 grid points x 5,000 steps + the final run) is too long for a CPU check: it is timed on
``--finetune-steps`` steps per run and the full cost is extrapolated linearly in steps, labelled so.
Usage: python benchmarks/task_wall_times.py --ckpt PATH [--data digits] [--tasks a,b]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mec_eval.tasks import run_task

TASKS = ("knn", "linear-fast", "linear", "semi-1pct", "semi-10pct", "semi-1pct-mec", "semi-10pct-mec",
         "transfer-linear", "transfer-finetune-fast", "transfer-finetune")
FULL_STEPS = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--finetune-steps", type=int, default=100)
    args = parser.parse_args()
    print(f"{'task':<24}{'metric':>16}{'value':>8}{'seconds':>10}  note", flush=True)
    for task in args.tasks.split(","):
        overrides = [f"data.name={args.data}"]
        note = ""
        if task == "transfer-finetune":
            overrides.append(f"optim.steps={args.finetune_steps}")
            note = f"measured at {args.finetune_steps} steps/run; x{FULL_STEPS // args.finetune_steps} = full-protocol estimate"
        with tempfile.TemporaryDirectory() as runs:
            t0 = time.perf_counter()
            result = run_task(task, args.ckpt, Path(runs), overrides, quiet=True).result
            seconds = time.perf_counter() - t0
        if task == "transfer-finetune":
            note += f" {seconds * FULL_STEPS / args.finetune_steps / 3600:.1f} h"
        primary = result["primary"]
        print(f"{task:<24}{primary:>16}{result['metrics'][primary]:>8.1f}{seconds:>10.1f}  {note}", flush=True)


if __name__ == "__main__":
    main()
