"""CPU pre-training throughput: fp32 vs bf16 autocast, contiguous vs channels_last, side by side.

Runs a few MEC training steps of the embedded-data network (resnet_tiny, 32 px, batch 128) in each
setting, interleaved in one process, and prints images/s and the ratio to the fp32 baseline.
Usage: python benchmarks/bench_pretrain_cpu.py [--arch resnet_tiny] [--size 32] [--batch 128] [--steps 6]
"""
from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch

from mec_eval.dist import autocast
from mec_eval.models import SiameseNetwork
from mec_eval.objectives import build_objective


def make_step(arch: str, channels_last: bool, dtype):
    torch.manual_seed(0)
    net = SiameseNetwork(arch, 512, 512, 3, True, 128, True, False)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    loss_cfg = SimpleNamespace(name="mec", eps_d2=0.06, order=4, side="auto", lam_warmup_epochs=10.0, temperature=0.1,
                               barlow_lambda=0.0051, vicreg_sim=25.0, vicreg_var=25.0, vicreg_cov=1.0)
    objective = build_objective(loss_cfg)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def step(views):
        views = [v.contiguous(memory_format=fmt) for v in views]
        with autocast(torch.device("cpu"), dtype):
            online, target = net(views)
        loss = objective(online, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        net.update_teacher(0.996)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet_tiny")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    views = [torch.randn(args.batch, 3, args.size, args.size) for _ in range(2)]
    settings = {"fp32": (False, None), "fp32+channels_last": (True, None),
                "bf16": (False, torch.bfloat16), "bf16+channels_last": (True, torch.bfloat16)}
    steps = {name: make_step(args.arch, cl, dt) for name, (cl, dt) in settings.items()}
    times = {name: [] for name in settings}
    for name in settings:  # warm-up (allocator, oneDNN kernel selection)
        steps[name](views)
    for _ in range(args.steps):  # interleaved, so machine noise hits all settings alike
        for name, step in steps.items():
            start = time.perf_counter()
            step(views)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["fp32"])
    print(f"{args.arch} {args.size}px batch {args.batch}, {torch.get_num_threads()} threads, median of {args.steps} steps")
    print(f"{'setting':<22}{'ms/step':>10}{'img/s':>10}{'speed-up':>10}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<22}{med * 1000:>10.1f}{args.batch / med:>10.1f}{base / med:>9.2f}x")


if __name__ == "__main__":
    main()
