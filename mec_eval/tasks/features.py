"""Frozen-backbone feature extraction into a memory-mapped, resumable on-disk cache.

Features depend only on (checkpoint weights, dataset, split, transform), so they are cached under
``RUNS/.cache/features/`` keyed by those and shared by kNN, linear-fast, transfer-linear and the
diagnostics. Extraction writes straight into ``.npy`` memory maps and records how many rows are
done, so a killed extraction (a pre-empted SLURM job) continues where it stopped instead of
starting over; ``meta.json`` is written last and marks the cache entry complete.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from mec_eval.checkpoints import Encoder
from mec_eval.config import EvalDataConfig, EvalRunConfig
from mec_eval.data import build_dataset, dataset_spec
from mec_eval.data.transforms import eval_transform, interpolation_mode
from mec_eval.dist import autocast, resolve_device, resolve_precision
from mec_eval.log import progress
from mec_eval.tasks.base import TaskBase
from mec_eval.runs import LOCKS_DIR, folder_lock, remove_new_empty_dirs, safe_name
from mec_eval.utils import UserError, atomic_write_text

CACHE_VERSION = 3
FLUSH_EVERY = 20        # batches between progress records (bounds the work lost to a kill)


def eval_image_size(data: EvalDataConfig) -> int:
    return data.image_size or dataset_spec(data.name).image_size


def test_transform(data: EvalDataConfig):
    """Deterministic resize + centre crop for ``data`` (ImageNet 256/224 from 128 px up unless configured)."""
    size = eval_image_size(data)
    ratio = data.resize_ratio or (256 / 224 if size >= 128 else 1.0)
    return eval_transform(size, ratio, interpolation_mode(data.interpolation))


@dataclass
class FeatureSet:
    """Features [N, D] (float32, possibly memory-mapped), targets [N] or [N, C], class names, and
    where the split came from (a split file, a seeded sample) when the dataset says."""
    features: np.ndarray
    targets: np.ndarray
    classes: list[str]
    split_source: str | None = None


def _cache_key(encoder: Encoder, data: EvalDataConfig, split: str, precision: str) -> str:
    ident = {"weights": encoder.sha256 or encoder.name, "arch": encoder.arch, "dataset": data.name,
             "root": str(Path(data.root).resolve()) if data.root else None, "split": split,
             "size": eval_image_size(data), "ratio": data.resize_ratio, "interp": data.interpolation,
             "precision": precision, "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def iterate_features(model: torch.nn.Module, dataset: Dataset, batch_size: int, num_workers: int,
                     device: torch.device, amp_dtype, quiet: bool = False, desc: str = "features"):
    """Yield (pooled features float32 [B, D] on CPU, targets) batch by batch, in dataset order."""
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    for images, targets in progress(loader, total=len(loader), desc=desc, quiet=quiet):
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            out = model(images)
        yield out.float().cpu(), torch.as_tensor(targets)


def _open_or_create(path: Path, shape: tuple, dtype) -> np.ndarray:
    if path.is_file():
        existing = np.load(path, mmap_mode="r+")
        if existing.shape == shape and existing.dtype == dtype:
            return existing
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    # Reserve the blocks now: a sparse memory map on a full disk dies of SIGBUS at some later row,
    # while fallocate fails here with ENOSPC, which the CLI reports as "the disk is full".
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.path.getsize(path))
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without fallocate
                raise
    return array


def _rows_done(progress_file: Path) -> int:
    if not progress_file.is_file():
        return 0
    try:
        return int(json.loads(progress_file.read_text(encoding="utf-8"))["rows"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{progress_file} is corrupt ({type(err).__name__}: {err}); delete {progress_file.parent} "
                        "to extract the features again") from None


def extract_to_cache(encoder: Encoder, dataset: Dataset, folder: Path, batch_size: int, num_workers: int,
                     device: torch.device, amp_dtype, quiet: bool, desc: str) -> None:
    """Fill ``folder/features.npy`` and ``targets.npy`` row by row, resuming from ``progress.json``."""
    progress_file = folder / "progress.json"
    done = _rows_done(progress_file)
    n = len(dataset)
    if not 0 <= done <= n:
        raise UserError(f"{progress_file} records {done} of {n} rows; delete {folder} to extract again")
    remaining = Subset(dataset, range(done, n)) if done else dataset
    feats = targets = None
    row = done
    for batch, (out, labels) in enumerate(iterate_features(encoder.backbone, remaining, batch_size, num_workers,
                                                            device, amp_dtype, quiet, desc)):
        if feats is None:
            folder.mkdir(parents=True, exist_ok=True)  # only once there is something to keep
            feats = _open_or_create(folder / "features.npy", (n, out.shape[1]), np.float32)
            targets = _open_or_create(folder / "targets.npy", (n, *labels.shape[1:]), np.int64)
        feats[row:row + len(out)] = out.numpy()
        targets[row:row + len(out)] = labels.numpy()
        row += len(out)
        if (batch + 1) % FLUSH_EVERY == 0:
            feats.flush()
            targets.flush()
            atomic_write_text(progress_file, json.dumps({"rows": row}))
    if feats is not None:
        feats.flush()
        targets.flush()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(progress_file, json.dumps({"rows": row}))


def cached_features(encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig, split: str, cache_root: Path,
                    quiet: bool = False) -> FeatureSet:
    """Features, targets and class names of one split, extracted once and then read from the cache.

    A cache hit reads ``meta.json`` instead of building the dataset again: listing ImageNet's 1.28M
    files costs more than loading its cached features.
    """
    folder = Path(cache_root) / safe_name(f"{data.name}-{split}-{_cache_key(encoder, data, split, run.precision)}")
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        # One extractor per cache entry: a second process waits, then reads what the first wrote.
        with remove_new_empty_dirs(folder), folder_lock(Path(cache_root) / LOCKS_DIR / f"{folder.name}.lock"):
            if not meta_file.is_file():
                _extract_split(encoder, data, run, split, folder, quiet)
    return _read_entry(folder)


def _read_entry(folder: Path) -> FeatureSet:
    """A finished cache entry; one that cannot be read (edited, truncated) is a UserError naming it."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        features = np.load(folder / "features.npy", mmap_mode="r")
        targets = np.load(folder / "targets.npy")
        entry = FeatureSet(features, targets, list(meta["classes"]), meta.get("split_source"))
        if len(features) != meta["rows"] or len(targets) != meta["rows"]:
            raise ValueError(f"{meta['rows']} rows recorded, {len(features)} features, {len(targets)} targets")
        return entry
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
        raise UserError(f"the feature cache entry {folder} is corrupt ({type(err).__name__}: {err}); "
                        "delete that folder to extract the features again") from None


def _extract_split(encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig, split: str, folder: Path,
                   quiet: bool) -> None:
    dataset = build_dataset(data.name, data.root, split, transform=test_transform(data))
    device = resolve_device(run.device)
    extract_to_cache(encoder, dataset, folder, data.batch_size, data.num_workers, device,
                     resolve_precision(run.precision, device), quiet, f"{data.name}/{split}")
    atomic_write_text(folder / "meta.json", json.dumps({
        "dataset": data.name, "split": split, "rows": len(dataset), "checkpoint": encoder.name,
        "sha256": encoder.sha256, "classes": list(dataset.classes),
        "split_source": getattr(dataset, "split_source", None)}, indent=1))


class FeatureTask(TaskBase):
    """Base of the tasks that work on cached frozen features."""

    def features(self, encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig, split: str) -> FeatureSet:
        return cached_features(encoder, data, run, split, self.cache_dir, self.quiet)

    def split_features(self, encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig):
        """(train_x, train_y, test_x, test_y, class names) as numpy arrays."""
        train = self.features(encoder, data, run, "train")
        test = self.features(encoder, data, run, "test")
        return np.array(train.features), train.targets, np.array(test.features), test.targets, train.classes
