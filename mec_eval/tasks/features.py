"""Frozen-backbone feature extraction with an on-disk cache shared by the fast protocols.

Features depend only on (checkpoint weights, dataset, split, transform), so they are cached under
``RUNS/.cache/features/`` keyed by those and reused by kNN, linear-fast and later tasks.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mec_eval.checkpoints import Encoder
from mec_eval.config import EvalDataConfig, EvalRunConfig
from mec_eval.data import build_dataset, dataset_spec
from mec_eval.data.transforms import eval_transform
from mec_eval.dist import autocast, resolve_device, resolve_precision
from mec_eval.log import progress
from mec_eval.utils import atomic_write_bytes


def eval_image_size(data: EvalDataConfig) -> int:
    return data.image_size or dataset_spec(data.name).image_size


def _cache_key(encoder: Encoder, data: EvalDataConfig, split: str, size: int, precision: str) -> str:
    ident = {"weights": encoder.sha256 or encoder.name, "arch": encoder.arch, "dataset": data.name,
             "root": str(Path(data.root).resolve()) if data.root else None, "split": split, "size": size,
             "precision": precision, "version": 1}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def extract(encoder: Encoder, dataset, batch_size: int, num_workers: int, device: torch.device,
            amp_dtype, quiet: bool = False, desc: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features (float32 [N, D]) and labels (int64 [N]) in dataset order."""
    model = encoder.backbone.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    feats, labels = [], []
    for images, targets in progress(loader, total=len(loader), desc=desc, quiet=quiet):
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            out = model(images)
        feats.append(out.float().cpu())
        labels.append(torch.as_tensor(targets))
    return torch.cat(feats).numpy(), torch.cat(labels).long().numpy()


def cached_features(encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig, split: str, cache_root: Path,
                    quiet: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, labels and class names of one split, from the cache when present."""
    size = eval_image_size(data)
    dataset = build_dataset(data.name, data.root, split, transform=eval_transform(size, 256 / 224 if size >= 128 else 1.0))
    key = _cache_key(encoder, data, split, size, run.precision)
    path = Path(cache_root) / f"{data.name}-{split}-{key}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return cached["features"], cached["labels"], list(dataset.classes)
    device = resolve_device(run.device)
    feats, labels = extract(encoder, dataset, data.batch_size, data.num_workers, device,
                            resolve_precision(run.precision, device), quiet=quiet, desc=f"{data.name}/{split}")
    buffer = io.BytesIO()
    np.savez(buffer, features=feats, labels=labels)
    atomic_write_bytes(path, buffer.getvalue())
    return feats, labels, list(dataset.classes)


class FeatureTask:
    """Base of the tasks that work on cached frozen features of a train and a test split."""

    def __init__(self, cache_dir: Path, quiet: bool = False):
        self.cache_dir, self.quiet = Path(cache_dir), quiet

    def split_features(self, encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig):
        """(train_x, train_y, test_x, test_y, class names) as numpy arrays."""
        train_x, train_y, classes = cached_features(encoder, data, run, "train", self.cache_dir, self.quiet)
        test_x, test_y, _ = cached_features(encoder, data, run, "test", self.cache_dir, self.quiet)
        return train_x, train_y, test_x, test_y, classes
