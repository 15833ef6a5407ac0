"""Seed spread of the demo recipe: MEC on digits vs random initialisation, several seeds.

For each seed: pre-train MEC with ``run.seed=<seed>`` (the demo's digits config), and evaluate it and
``random:resnet_tiny@<seed>`` with kNN and linear-fast. Prints mean +- std per method and task and
whether MEC's lead exceeds the spread (the larger of the two stds, doubled). Re-running reuses
finished pre-training and runs.
``--set key=value`` (repeatable) adds pre-training overrides (e.g. ``loss.regularizer=mec``); ``--tag`` names
the variant's run folders so variants of one method do not share them.
Usage: python benchmarks/demo_seeds.py [--out seeds_out] [--seeds 0,1,2] [--epochs 40] [--method mec]
       [--set key=value ...] [--tag NAME]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from mec_eval.config import load_pretrain_config
from mec_eval.pretrain.main import pretrain
from mec_eval.tasks import run_task

TASKS = ("knn", "linear-fast")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="seeds_out")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--method", default="mec")
    parser.add_argument("--set", action="append", default=[], help="pre-training override key=value")
    parser.add_argument("--tag", default=None, help="label of this variant (default: the method)")
    args = parser.parse_args()
    tag = args.tag or args.method
    out, seeds = Path(args.out), [int(s) for s in args.seeds.split(",")]
    scores: dict[tuple[str, str], list[float]] = {}
    for seed in seeds:
        overrides = [f"loss.name={args.method}", f"optim.epochs={args.epochs}", f"run.seed={seed}", *args.set]
        cfg = load_pretrain_config("digits", overrides)
        trained = pretrain(cfg, out / "pretrain" / f"{tag}-s{seed}", quiet=True)
        for label, ckpt in ((tag, str(trained)), ("random", f"random:resnet_tiny@{seed}")):
            for task in TASKS:
                outcome = run_task(task, ckpt, out / "runs", ["data.name=digits", f"run.seed={seed}"], quiet=True)
                scores.setdefault((label, task), []).append(outcome.result["metrics"]["top1"])
    print(f"digits top-1 over seeds {seeds} ({args.epochs} pre-training epochs; {tag}: {args.set or 'no overrides'})")
    print(f"{'checkpoint':<16}{'task':<13}{'mean':>8}{'std':>7}  values")
    for (label, task), values in sorted(scores.items()):
        std = statistics.pstdev(values)
        print(f"{label:<16}{task:<13}{statistics.mean(values):>8.2f}{std:>7.2f}  {', '.join(f'{v:.1f}' for v in values)}")
    for task in TASKS:
        ours, rand = scores[(tag, task)], scores[("random", task)]
        gap = statistics.mean(ours) - statistics.mean(rand)
        spread = 2 * max(statistics.pstdev(ours), statistics.pstdev(rand))
        print(f"{task}: {tag} - random = {gap:+.2f} points; 2 x largest std = {spread:.2f}; "
              f"{'exceeds' if gap > spread else 'does NOT exceed'} the spread")


if __name__ == "__main__":
    main()
