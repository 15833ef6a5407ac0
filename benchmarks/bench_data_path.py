"""Pre-training data path for on-disk sets: decode + two views, official MEC recipe vs mec-eval.

Side by side in one process on the same JPEGs (~500x375, smooth random content with shapes, written
to a temp ImageFolder), for each view size:
- official: a transcription of the official MEC loader (PIL open + convert RGB, torchvision v1
  RandomResizedCrop(scale 0.2-1), flip, ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale 0.2, PIL
  GaussianBlur (sigma 0.1-2; p 1.0 / 0.1), PIL solarize (p 0 / 0.2), ToTensor, Normalize);
- v2 before: mec-eval's former per-sample torchvision v2 pipeline (PIL decode, ``view_transform``);
- per-image: mec-eval's loader transform now (``decode_rgb`` + ``TensorView``);
- batched: the loader-worker half (``decode_rgb`` + ``TwoCrops``) plus the batch half
  (``BatchTwoViews(cropped=True)`` on CPU), and their sum.
Everything runs with one torch thread, as a DataLoader worker does, so ms/image is CPU time per
image. Prints ms/image, the ratio to official (lower is faster) and the CPU capability.
Usage: python benchmarks/bench_data_path.py [--quick] [--images N] [--sizes 32,96,224] [--repeats R]
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from torchvision import transforms as T

from mec_eval.data.decode import decode_rgb
from mec_eval.data.folders import load_rgb
from mec_eval.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mec_eval.pretrain.augment import TwoCrops, build_two_view_transform, view_transform
from mec_eval.pretrain.batch_augment import BatchTwoViews, view_recipes


def write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs of ~500x375: upscaled smooth noise (natural-image-like spectra) with a few shapes."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        low = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(low).resize((500, 375), Image.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = int(rng.integers(0, 420)), int(rng.integers(0, 300))
            draw.ellipse((x, y, x + int(rng.integers(20, 80)), y + int(rng.integers(20, 80))),
                         fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        path = folder / "train" / f"c{i % 2}" / f"{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90)
        paths.append(path)
    return paths


class PilGaussianBlur:
    """The official loader's blur: PIL GaussianBlur with radius drawn uniformly in [0.1, 2]."""

    def __call__(self, image):
        return image.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))


class PilSolarize:
    def __call__(self, image):
        return ImageOps.solarize(image)


def official_views(size: int):
    """Both views of the official recipe (asymmetric blur 1.0 / 0.1, solarize 0 / 0.2)."""
    def view(blur_p: float, solarize_p: float):
        return T.Compose([
            T.RandomResizedCrop(size, scale=(0.2, 1.0)), T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
            T.RandomApply([PilGaussianBlur()], p=blur_p), T.RandomApply([PilSolarize()], p=solarize_p),
            T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return view(1.0, 0.0), view(0.1, 0.2)


def pil_open(path: Path) -> Image.Image:
    """torchvision ImageFolder's default loader."""
    with open(path, "rb") as fh:
        return Image.open(fh).convert("RGB")


def pipelines(size: int, paths: list[Path], batch: int) -> dict:
    """name -> callable over all ``paths``; the batched halves are timed separately and summed."""
    off1, off2 = official_views(size)
    v2_first, v2_second = (view_transform(r) for r in view_recipes("byol", size))
    ours = build_two_view_transform("byol", size)
    crops = TwoCrops("byol", size)
    views = BatchTwoViews("byol", size, 0.2, seed=0, cropped=True)
    cropped = {}

    def worker_half():
        cropped["all"] = torch.stack([crops(decode_rgb(p)) for p in paths])

    def batch_half():
        for start in range(0, len(paths), batch):
            views(cropped["all"][start:start + batch])

    return {
        "official (PIL + v1)": lambda: [(off1(im), off2(im)) for im in map(pil_open, paths)],
        "mec-eval v2 before": lambda: [(v2_first(im), v2_second(im)) for im in map(load_rgb, paths)],
        "mec-eval per-image": lambda: [ours(decode_rgb(p)) for p in paths],
        "batched: worker half": worker_half,
        "batched: batch half": batch_half,
    }


def measure(size: int, paths: list[Path], batch: int, repeats: int) -> dict[str, float]:
    """Median ms/image of each pipeline over ``repeats`` interleaved rounds."""
    runs = pipelines(size, paths, batch)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / len(paths) * 1000)
    result = {name: statistics.median(values) for name, values in times.items()}
    result["batched: total"] = result["batched: worker half"] + result["batched: batch half"]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--sizes", default="32,96,224")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="8 images, 96 px, one round (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.sizes, args.repeats, args.batch = 8, "96", 1, 8
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}, torch threads {torch.get_num_threads()}, "
          f"{args.images} JPEGs 500x375, median of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.images)
        for size in (int(s) for s in args.sizes.split(",")):
            result = measure(size, paths, args.batch, args.repeats)
            base = result["official (PIL + v1)"]
            print(f"{size} px: decode + two views")
            for name, ms in result.items():
                print(f"  {name:<24}{ms:8.3f} ms/image  ratio to official {ms / base:6.3f}")


if __name__ == "__main__":
    main()
