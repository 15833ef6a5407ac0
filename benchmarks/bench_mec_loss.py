"""MEC loss speed: our order-4 trace vs the paper's App. A power loop vs the exact log-det (CPU, float32).

Times forward + backward of each formulation on the same random inputs, interleaved in one process
(so machine noise hits all three alike), and reports medians and the ratios naive/ours and
exact/ours. Then prints the order-4 Taylor error against the exact log-det at eps_d2 = 0.06.

    python benchmarks/bench_mec_loss.py                 # sizes 256x2048,1024x2048,2048x2048
    python benchmarks/bench_mec_loss.py --quick         # 128x512,256x1024, one repeat
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from mec_eval.objectives import mec_loss

EPS_D2 = 0.06
ORDER = 4


def naive_app_a(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Paper App. A: batch-wise ``m x m`` matrix, one matmul per order, trace of the summed powers."""
    m, d = z1.shape
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    c = z1 @ z2.T / (m * EPS_D2)
    power, total = c, torch.zeros_like(c)
    for k in range(1, ORDER + 1):
        if k > 1:
            power = power @ c
        total = total + power / k if k % 2 == 1 else total - power / k
    return -(m + d) / 2 * torch.trace(total)


def exact_logdet(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``-mu * logdet(I_m + lam Z1 Z2^T)`` through ``torch.linalg.slogdet`` (paper Eq. 3, left side)."""
    m, d = z1.shape
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    c = z1 @ z2.T / (m * EPS_D2)
    return -(m + d) / 2 * torch.linalg.slogdet(torch.eye(m) + c)[1]


def ours(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    return mec_loss(z1, z2, eps_d2=EPS_D2, order=ORDER, side="auto")


METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ours": ours, "naive": naive_app_a, "exact": exact_logdet,
}


def views(m: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views of ``m`` random unit vectors, as a training batch would give."""
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(m, d, generator=generator)
    return z1, z1 + 0.5 * torch.randn(m, d, generator=generator)


def time_forward_backward(fn, z1: torch.Tensor, z2: torch.Tensor) -> float:
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    start = time.perf_counter()
    fn(a, b).backward()
    return time.perf_counter() - start


def bench_size(m: int, d: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per method; one untimed warm-up round first (allocator, thread pool)."""
    z1, z2 = views(m, d)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    for round_index in range(repeats + 1):
        for name, fn in METHODS.items():
            elapsed = time_forward_backward(fn, z1, z2)
            if round_index > 0:
                times[name].append(elapsed)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def taylor_errors(m: int, d: int) -> tuple[float, float, float]:
    """Relative error of order-4 Taylor vs the float64 exact log-det: random views, correlated views."""
    generator = torch.Generator().manual_seed(1)
    unrelated = torch.randn(m, d, generator=generator, dtype=torch.float64)
    z1, z2 = (z.double() for z in views(m, d))
    errors = []
    for a, b, dtype in ((z1, unrelated, torch.float64), (z1, z2, torch.float64), (z1, z2, torch.float32)):
        exact = mec_loss(a, b, eps_d2=EPS_D2, exact=True).item()
        approx = mec_loss(a.to(dtype), b.to(dtype), eps_d2=EPS_D2, order=ORDER).item()
        errors.append(abs(approx - exact) / abs(exact))
    return errors[0], errors[1], errors[2]


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        m, _, d = item.strip().partition("x")
        sizes.append((int(m), int(d)))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256x2048,1024x2048,2048x2048", help="comma-separated MxD")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per size (median reported)")
    parser.add_argument("--quick", action="store_true", help="1 repeat on 128x512,256x1024")
    args = parser.parse_args()
    sizes = parse_sizes("128x512,256x1024" if args.quick else args.sizes)
    repeats = 1 if args.quick else args.repeats

    print(f"torch {torch.__version__}, CPU float32, {torch.get_num_threads()} threads, "
          f"order {ORDER}, eps_d2 {EPS_D2}, forward+backward, median of {repeats}")
    header = ("m x d", "ours ms", "naive ms", "exact ms", "naive/ours", "exact/ours")
    print(" | ".join(f"{title:>{width}}" for title, width in zip(header, (11, 9, 9, 9, 10, 10))))
    for m, d in sizes:
        ms = bench_size(m, d, repeats)
        print(f"{f'{m}x{d}':>11} | {ms['ours']:9.2f} | {ms['naive']:9.2f} | {ms['exact']:9.2f} | "
              f"{ms['naive'] / ms['ours']:10.2f} | {ms['exact'] / ms['ours']:10.2f}")

    print("\nrelative error of order-4 Taylor vs exact -mu*logdet (float64 exact), eps_d2 = 0.06")
    print(f"{'m x d':>11} | {'unrelated f64':>13} | {'views f64':>10} | {'views f32':>10}")
    for m, d in sizes:
        unrelated, related, related32 = taylor_errors(m, d)
        print(f"{f'{m}x{d}':>11} | {unrelated:13.2e} | {related:10.2e} | {related32:10.2e}")


if __name__ == "__main__":
    main()
