"""Seconds for every diagnostic (both variants) on n x d random float64 features and a second view.

Default 10,000 x 2,048 (the issue's size): the single-view quantities on the 2,048 x 2,048 Gram, the
Wang-Isola uniformity over all 5e7 pairs in blocks, and the two-view mutual information / joint
entropy whose Hadamard Gram is n x n (an n x n float64 eigendecomposition: the dominant cost).
Usage: python benchmarks/bench_diagnostics.py [--n 10000] [--d 2048] [--n-views N]  (--n 1000 --d 256 to smoke)
"""
from __future__ import annotations

import argparse
import time

import torch

from mec_eval.diagnostics import single_view_diagnostics, two_view_diagnostics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--n-views", type=int, default=0, help="rows for the two-view quantities (0: n)")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(args.n, args.d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(args.n, args.d, generator=g, dtype=torch.float64)
    pairs = args.n_views or args.n
    print(f"diagnostics of {args.n} x {args.d} float64 features, two views of {pairs}, "
          f"{torch.get_num_threads()} threads")
    total = 0.0
    for centred in (False, True):
        for name in ("single view", "two views"):
            start = time.perf_counter()
            if name == "single view":
                values = single_view_diagnostics(z1, centred=centred)
            else:
                values = two_view_diagnostics(z1[:pairs], z2[:pairs], centred=centred)
            seconds = time.perf_counter() - start
            total += seconds
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            print(f"{name:<12}{' centred' if centred else ' plain  '} {seconds:8.2f} s  {shown}")
    print(f"all diagnostics, both variants: {total:.2f} s")


if __name__ == "__main__":
    main()
