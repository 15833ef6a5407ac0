"""The one-pass grid of linear-probe heads against one probe run, side by side in one process.

Target (issue 13): k = 8 heads in one pass cost <= 1.3x one run, where k separate runs cost k x.

Both sides are ``mec-eval run --task linear`` through the library (:func:`mec_eval.tasks.run_task`)
on the same data, backbone (``random:<arch>``), epochs, batch and held-out split: the baseline is a
grid of one head (``grid.base_lrs=[0.03]``), the other the grid of ``--heads`` base lrs. Each run gets
a fresh run folder (nothing cached: the probe trains on augmented crops, so every epoch pays the
backbone's forward pass). The two alternate ``--repeats`` times; medians and their ratio are printed.
Usage: python benchmarks/bench_linear_grid.py [--arch resnet18] [--size 64] [--epochs 1] [--heads 8]
       [--repeats 3]   |   --smoke (resnet_tiny, 16 px, CI)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mec_eval.tasks import run_task

LRS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 0.02, 0.05, 0.2, 0.5, 2.0, 5.0, 20.0, 50.0)


def timed_run(root: Path, arch: str, overrides: list[str]) -> float:
    began = time.perf_counter()
    outcome = run_task("linear", f"random:{arch}", root, overrides, quiet=True)
    assert not outcome.skipped
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny settings that finish in seconds (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.size, args.epochs, args.heads, args.repeats = "resnet_tiny", 16, 1, 3, 1
    if not 1 <= args.heads <= len(LRS):
        parser.error(f"--heads must be in 1..{len(LRS)}")
    common = ["data.name=digits", f"data.image_size={args.size}", f"optim.epochs={args.epochs}",
              "optim.batch_size=256", "grid.val_fraction=0.1", "run.device=cpu"]
    one = [*common, "grid.base_lrs=[0.03]"]
    grid = [*common, f"grid.base_lrs=[{','.join(map(str, LRS[:args.heads]))}]"]
    print(f"cpu_capability {torch.backends.cpu.get_cpu_capability()}  threads {torch.get_num_threads()}  "
          f"arch {args.arch}  size {args.size}  epochs {args.epochs}  heads {args.heads}")
    times = {"one head": [], f"{args.heads} heads": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            times["one head"].append(timed_run(Path(tmp) / f"one{repeat}", args.arch, one))
            times[f"{args.heads} heads"].append(timed_run(Path(tmp) / f"grid{repeat}", args.arch, grid))
    one_s, grid_s = (statistics.median(v) for v in times.values())
    print(f"one head: {one_s:.2f} s   {args.heads} heads in one pass: {grid_s:.2f} s   "
          f"ratio {grid_s / one_s:.3f}x one run (target <= 1.3)   "
          f"vs {args.heads} separate runs: {args.heads * one_s / grid_s:.2f}x faster")


if __name__ == "__main__":
    main()
