"""Two-view augmentation cost: torchvision per-image pipeline vs the batched tensor version.

Both produce the MEC App. C views of 32 px images; timed side by side in one process on the same
uint8 images, printed as ms per image and the ratio.
Usage: python benchmarks/bench_augment.py [--n 512] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.transforms.v2.functional import to_pil_image

from mec_eval.pretrain.augment import build_two_view_transform
from mec_eval.pretrain.batch_augment import BatchTwoViews


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pils = [to_pil_image(im) for im in images]
    per_image = build_two_view_transform("byol", 32)
    batched = BatchTwoViews("byol", 32, 0.2, seed=0)
    runs = {"torchvision per image": lambda: [per_image(p) for p in pils], "batched tensors": lambda: batched(images)}
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / args.n * 1000)
    base = statistics.median(times["torchvision per image"])
    print(f"two views of {args.n} images (32 px), {torch.get_num_threads()} threads, median of {args.repeats}")
    for name, values in times.items():
        print(f"{name:<24}{statistics.median(values):8.3f} ms/image  {base / statistics.median(values):6.2f}x")


if __name__ == "__main__":
    main()
