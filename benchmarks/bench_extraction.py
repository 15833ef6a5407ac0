"""Feature extraction: mec-eval's cached path against a plain torchvision inference loop, side by side.

Target: mec-eval >= 0.95x the plain loop's img/s (the cache, resume records and memory maps cost nothing).

Both sides run the same backbone object (``random:<arch>``), the same JPEGs (``--data``: an ImageNet
tree, or synthetic JPEGs written to a temporary folder), the same batch size, transform
(``tasks.features.test_transform``: resize 256/224, centre crop, normalise), precision (the run's
``precision=auto``), channels_last input, eval mode and no_grad, each through a DataLoader with
``--workers`` workers. mec-eval's side is ``tasks.features.ensure_features`` into a fresh cache folder
(dataset build, lock, memory-mapped writes, progress records, meta.json); the plain side is
``torchvision.datasets.ImageFolder`` + a loop that keeps the features on the CPU. The two alternate
``--repeats`` times so machine noise hits both; medians are printed with their ratio.
Usage: python benchmarks/bench_extraction.py [--data /path/imagenet] [--arch resnet50] [--size 224]
       [--batch 64] [--workers 2] [--repeats 3]   |   --smoke (resnet_tiny, 32 px, CI)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from mec_eval.checkpoints import load_encoder
from mec_eval.config import EvalDataConfig, EvalRunConfig
from mec_eval.dist import autocast, resolve_device, resolve_precision
from mec_eval.tasks.features import ensure_features, read_entry, test_transform

WNID = "n01440764"


def write_jpegs(folder: Path, count: int, width: int) -> Path:
    """``count`` photo-sized JPEGs (smooth noise, 4:3) in an ImageNet tree's ``train/`` (the split both read)."""
    rng = np.random.default_rng(0)
    height = width * 3 // 4
    target = folder / "train" / WNID
    target.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((width, height), Image.BICUBIC).save(target / f"{WNID}_{index}.JPEG",
                                                                           format="JPEG", quality=90)
    return folder


def mec_eval_side(encoder, data: EvalDataConfig, run: EvalRunConfig, cache_root: Path) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    folder = ensure_features(encoder, data, run, "train", cache_root, quiet=True)
    seconds = time.perf_counter() - began
    features = np.asarray(read_entry(folder).features)
    return len(features) / seconds, features


@torch.no_grad()
def plain_side(model, data: EvalDataConfig, device: torch.device, amp_dtype) -> tuple[float, np.ndarray]:
    """The textbook loop: ImageFolder + DataLoader + eval-mode forward; the features kept on the CPU."""
    began = time.perf_counter()
    dataset = ImageFolder(str(Path(data.root) / "train"), transform=test_transform(data))
    loader = DataLoader(dataset, batch_size=data.batch_size, shuffle=False, num_workers=data.num_workers,
                        pin_memory=device.type == "cuda")
    model.eval()
    outputs = []
    for images, _ in loader:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            outputs.append(model(images).float().cpu())
    features = torch.cat(outputs).numpy()
    return len(features) / (time.perf_counter() - began), features


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="ImageNet root (train/<wnid>/*.JPEG); default: synthetic JPEGs")
    p.add_argument("--images", type=int, default=512, help="synthetic JPEGs to write (default 512)")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true", help="resnet_tiny, 32 px, 32 images, one repeat (CI)")
    args = p.parse_args()
    if args.smoke:
        args.arch, args.size, args.images, args.batch, args.workers, args.repeats = "resnet_tiny", 32, 32, 8, 1, 1
    return args


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    run = EvalRunConfig(device=args.device)
    amp_dtype = resolve_precision(run.precision, device)
    encoder = load_encoder(f"random:{args.arch}")
    model = encoder.backbone.to(device).to(memory_format=torch.channels_last)
    print(f"device {device}  cpu_capability {torch.backends.cpu.get_cpu_capability()}  threads "
          f"{torch.get_num_threads()}  arch {args.arch}  size {args.size}  batch {args.batch}  workers {args.workers}"
          f"  precision {str(amp_dtype).replace('torch.', '') if amp_dtype else 'fp32'}  torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or str(write_jpegs(Path(tmp) / "data", args.images, max(args.size * 2, 64)))
        data = EvalDataConfig(name="imagenet", root=root, image_size=args.size, batch_size=args.batch,
                              num_workers=args.workers)
        ours, plain = [], []
        for repeat in range(args.repeats):
            speed, mine = mec_eval_side(encoder, data, run, Path(tmp) / f"cache{repeat}")
            ours.append(speed)
            speed, theirs = plain_side(model, data, device, amp_dtype)
            plain.append(speed)
            if not np.allclose(mine, theirs, rtol=1e-4, atol=1e-5):
                raise SystemExit("the two sides disagree on the features: they do not run the same computation")
    ratio = statistics.median(ours) / statistics.median(plain)
    print(f"mec-eval extraction img/s={statistics.median(ours):.1f}  (runs: {', '.join(f'{v:.1f}' for v in ours)})")
    print(f"plain torchvision img/s={statistics.median(plain):.1f}  (runs: {', '.join(f'{v:.1f}' for v in plain)})")
    print(f"ratio={ratio:.3f}x  (target >= 0.95x)")


if __name__ == "__main__":
    main()
