"""Fast linear probe vs the paper's LARS probe, side by side: accuracy gap and wall-time ratio.

For each checkpoint and embedded dataset, runs ``linear`` (official MEC protocol: frozen backbone,
augmented crops, LARS batch 4096, 100 epochs) and ``linear-fast`` (cached features + L-BFGS) in this
one process, each with a fresh runs folder and feature cache (so the fast protocol's time includes
its feature extraction), and prints top-1 of both, the gap (paper - fast) and the time ratio
(paper / fast). Extra ``--paper-overrides`` (e.g. ``optim.batch_size=256``) go to ``linear`` only.
Usage: python benchmarks/linear_fast_vs_paper.py --ckpt random:resnet_tiny --ckpt PATH [--data digits,shapes]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mec_eval.tasks import run_task


def timed(task: str, ckpt: str, overrides: list[str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        outcome = run_task(task, ckpt, Path(runs), overrides, quiet=True)
        return outcome.result["metrics"]["top1"], time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", required=True)
    parser.add_argument("--data", default="digits,shapes")
    parser.add_argument("--paper-overrides", default="", help="comma-separated overrides for `linear` only")
    args = parser.parse_args()
    extra = [o for o in args.paper_overrides.split(",") if o]
    print(f"{'checkpoint':<28}{'data':<8}{'paper top1':>11}{'fast top1':>10}{'gap':>7}{'paper s':>9}{'fast s':>8}{'ratio':>7}")
    for ckpt in args.ckpt:
        for dataset in args.data.split(","):
            paper, paper_s = timed("linear", ckpt, [f"data.name={dataset}", *extra])
            fast, fast_s = timed("linear-fast", ckpt, [f"data.name={dataset}"])
            print(f"{Path(ckpt).name[-27:]:<28}{dataset:<8}{paper:>11.1f}{fast:>10.1f}{paper - fast:>7.1f}"
                  f"{paper_s:>9.1f}{fast_s:>8.1f}{paper_s / fast_s:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
