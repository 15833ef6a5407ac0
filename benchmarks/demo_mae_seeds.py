"""Seed spread of MAE vs U-MAE vs M-MAE: ViT-Tiny (4 px patches) on the embedded digits, kNN and linear-fast.

For each method and seed: pre-train configs/digits-mae.yaml with ``loss.name=<method> run.seed=<seed>``
(``--epochs`` epochs; everything else as the config), then evaluate the checkpoint with kNN and linear-fast
on digits. Prints mean +- std (population std over the seeds) per method and task, and for U-MAE and
M-MAE whether their difference to MAE exceeds the spread (twice the larger of the two stds): on this
CPU budget a difference inside the spread is no evidence either way. No value is tuned to the demo.
Re-running reuses finished pre-training and runs.
``--linear-wd 1e-4`` fits linear-fast at that one weight decay instead of the task's grid (a cheaper run, printed).
Usage: python benchmarks/demo_mae_seeds.py [--out mae_seeds_out] [--seeds 0,1,2] [--epochs 8] [--linear-wd W]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from mec_eval.config import load_pretrain_config
from mec_eval.pretrain.main import pretrain
from mec_eval.tasks import run_task

METHODS = ("mae", "umae", "mmae")
TASKS = ("knn", "linear-fast")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="mae_seeds_out")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--linear-wd", type=float, default=None, help="one linear-fast weight decay, no grid")
    args = parser.parse_args()
    out, seeds, methods = Path(args.out), [int(s) for s in args.seeds.split(",")], args.methods.split(",")
    scores: dict[tuple[str, str], list[float]] = {}
    seconds = {"pretrain": 0.0, "evaluate": 0.0}
    for method in methods:
        for seed in seeds:
            start = time.perf_counter()
            cfg = load_pretrain_config("digits-mae", [f"loss.name={method}", f"optim.epochs={args.epochs}",
                                                      f"run.seed={seed}", "run.device=cpu"])
            trained = pretrain(cfg, out / "pretrain" / f"{method}-s{seed}", quiet=True)
            seconds["pretrain"] += time.perf_counter() - start
            start = time.perf_counter()
            for task in TASKS:
                grid = [f"linear.wd_grid=[{args.linear_wd}]"] if task == "linear-fast" and args.linear_wd else []
                outcome = run_task(task, str(trained), out / "runs",
                                   ["data.name=digits", f"run.seed={seed}", "run.device=cpu", *grid], quiet=True)
                scores.setdefault((method, task), []).append(outcome.result["metrics"]["top1"])
            seconds["evaluate"] += time.perf_counter() - start
    grid = f"linear-fast wd {args.linear_wd} (no grid)" if args.linear_wd else "linear-fast wd grid of the task"
    print(f"digits top-1, ViT-Tiny/4, seeds {seeds}, {args.epochs} pre-training epochs, {grid} "
          f"(wall: pre-training {seconds['pretrain']:.0f} s, evaluation {seconds['evaluate']:.0f} s)")
    print(f"{'method':<8}{'task':<13}{'mean':>8}{'std':>7}  values")
    for (method, task), values in sorted(scores.items()):
        std = statistics.pstdev(values)
        print(f"{method:<8}{task:<13}{statistics.mean(values):>8.2f}{std:>7.2f}  "
              f"{', '.join(f'{v:.1f}' for v in values)}")
    if "mae" not in methods:
        return
    for method in (m for m in methods if m != "mae"):
        for task in TASKS:
            ours, base = scores[(method, task)], scores[("mae", task)]
            gap = statistics.mean(ours) - statistics.mean(base)
            spread = 2 * max(statistics.pstdev(ours), statistics.pstdev(base))
            print(f"{task}: {method} - mae = {gap:+.2f} points; 2 x largest std = {spread:.2f}; "
                  f"{'exceeds' if abs(gap) > spread else 'does NOT exceed'} the spread")


if __name__ == "__main__":
    main()
