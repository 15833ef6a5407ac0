"""Frozen-backbone feature extraction into a memory-mapped, resumable on-disk cache.

Features depend only on (checkpoint weights, dataset, split, transform), so they are cached under
``RUNS/.cache/features/`` keyed by those and shared by kNN, linear-fast, transfer-linear and the
diagnostics. Extraction writes straight into ``.npy`` memory maps and records how many rows are
done, so a killed extraction (a pre-empted SLURM job) continues where it stopped instead of
starting over; ``meta.json`` is written last and marks the cache entry complete.

Under ``torchrun`` / SLURM with N processes every process extracts every N-th batch into the same
memory maps (the cache folder must be on a file system all processes see, as the runs folder is);
the main process holds the entry's lock, creates the files and writes progress and ``meta.json``.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mec_eval import dist
from mec_eval.checkpoints import Encoder
from mec_eval.config import EvalDataConfig, EvalRunConfig
from mec_eval.data import build_dataset, dataset_spec
from mec_eval.data.transforms import eval_transform, interpolation_mode
from mec_eval.dist import autocast, resolve_device, resolve_precision
from mec_eval.log import progress
from mec_eval.runs import LOCKS_DIR, folder_lock, remove_new_empty_dirs, safe_name
from mec_eval.tasks.base import TaskBase, TaskContext
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
def iterate_features(model: torch.nn.Module, dataset: Dataset, batches: list[range], num_workers: int,
                     device: torch.device, amp_dtype, quiet: bool = False, desc: str = "features"):
    """Yield (pooled features float32 [B, D] on CPU, targets) for each batch of dataset indices, in order."""
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, pin_memory=device.type == "cuda")
    for images, targets in progress(loader, total=len(batches), desc=desc, quiet=quiet):
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


def _prepare_entry(encoder: Encoder, dataset: Dataset, folder: Path) -> int:
    """Create (or reopen, to resume) the entry's memory maps; returns the rows already done (main process)."""
    progress_file = folder / "progress.json"
    done, n = _rows_done(progress_file), len(dataset)
    if not 0 <= done <= n:
        raise UserError(f"{progress_file} records {done} of {n} rows; delete {folder} to extract again")
    folder.mkdir(parents=True, exist_ok=True)
    _open_or_create(folder / "features.npy", (n, encoder.feature_dim), np.float32)
    _open_or_create(folder / "targets.npy", (n, *np.shape(dataset[0][1])), np.int64)
    return done


def _open_shared(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The entry's memory maps, which the main process created, opened for writing by this process."""
    try:
        return (np.load(folder / "features.npy", mmap_mode="r+"), np.load(folder / "targets.npy", mmap_mode="r+"))
    except FileNotFoundError:
        raise UserError(f"process {dist.rank()} does not see {folder}, which process 0 created: the runs folder "
                        "(--out) must be on a file system that every process of the job sees") from None


@contextlib.contextmanager
def _discard_if_nothing_kept(folder: Path):
    """Remove ``folder`` when it is new and the block fails before any row was recorded (nothing to resume)."""
    new = not folder.exists()
    try:
        yield
    except BaseException:
        if new and not (folder / "progress.json").exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise


def extract_to_cache(encoder: Encoder, dataset: Dataset, folder: Path, batch_size: int, num_workers: int,
                     device: torch.device, amp_dtype, quiet: bool, desc: str) -> None:
    """Fill ``folder/features.npy`` and ``targets.npy`` row by row, resuming from ``progress.json``.

    With N processes each takes every N-th batch of the rows still to do (:func:`dist.shard_batches`,
    the same batches one process makes, so the same bits) and writes them straight into the shared
    memory maps at their dataset positions: no gather of a dataset-sized array through one process.
    The main process creates the files and records progress as the first row not yet written by
    every process, so ``progress.json`` keeps meaning "rows [0, r) are done" and a resume with any
    number of processes continues from it.
    """
    main = dist.is_main_process()
    with _discard_if_nothing_kept(folder) if main else contextlib.nullcontext():
        done = dist.share_from_main(lambda: _prepare_entry(encoder, dataset, folder))  # files exist after this
        n = len(dataset)
        feats, targets = _open_shared(folder)
        batches = [range(done + b.start, done + b.stop) for b in dist.shard_batches(n - done, batch_size)]

        def record(written: int) -> None:  # a collective: every process calls it equally often
            feats.flush()
            targets.flush()
            first_missing = batches[written].start if written < len(batches) else n
            rows = min(dist.gather_together(lambda: first_missing))
            if main:
                atomic_write_text(folder / "progress.json", json.dumps({"rows": rows}))

        outputs = iterate_features(encoder.backbone, dataset, batches, num_workers, device, amp_dtype,
                                   quiet or not main, desc)
        for written, (rows, (out, labels)) in enumerate(zip(batches, outputs), start=1):
            feats[rows.start:rows.stop] = out.numpy()
            targets[rows.start:rows.stop] = labels.numpy()
            if written % FLUSH_EVERY == 0:
                record(written)
        # The main process has the most batches; the others match its number of progress records.
        main_batches = len(range(0, n - done, batch_size * dist.world_size()))
        for _ in range(main_batches // FLUSH_EVERY - len(batches) // FLUSH_EVERY):
            record(len(batches))
        record(len(batches))


def ensure_features(encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig, split: str, cache_root: Path,
                    quiet: bool = False, on_extract: Callable[[], None] | None = None) -> Path:
    """The cache entry (folder) of one split, extracted first unless it is complete; every process calls it.

    ``on_extract`` is called once the dataset is built, right before an extraction starts.

    A cache hit reads ``meta.json`` instead of building the dataset again: listing ImageNet's 1.28M
    files costs more than loading its cached features. The main process alone holds the entry's
    lock and decides; its peers wait for the decision, then extract their shares with it.
    """
    folder = Path(cache_root) / safe_name(f"{data.name}-{split}-{_cache_key(encoder, data, split, run.precision)}")
    meta_file = folder / "meta.json"
    main = dist.is_main_process()
    if not dist.share_from_main(meta_file.is_file):
        # One extraction per cache entry: another job waits for the lock, then reads what the first wrote.
        lock = folder_lock(Path(cache_root) / LOCKS_DIR / f"{folder.name}.lock") if main else contextlib.nullcontext()
        with remove_new_empty_dirs(folder) if main else contextlib.nullcontext(), lock:
            if not dist.share_from_main(meta_file.is_file):
                _extract_split(encoder, data, run, split, folder, quiet, on_extract)
    return folder


def cached_features(encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig, split: str, cache_root: Path,
                    quiet: bool = False) -> FeatureSet:
    """Features, targets and class names of one split, extracted once and then read from the cache."""
    return read_entry(ensure_features(encoder, data, run, split, cache_root, quiet))


def read_entry(folder: Path) -> FeatureSet:
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
                   quiet: bool, on_extract: Callable[[], None] | None = None) -> None:
    # Every process builds the dataset (each reads its own batches); a missing one fails on all alike.
    dataset = dist.run_together(lambda: build_dataset(data.name, data.root, split, transform=test_transform(data)))
    if on_extract is not None:
        on_extract()
    device = resolve_device(run.device)
    extract_to_cache(encoder, dataset, folder, data.batch_size, data.num_workers, device,
                     resolve_precision(run.precision, device), quiet, f"{data.name}/{split}")
    # The completion marker, last; the other processes wait for it before anyone reads the entry.
    dist.share_from_main(lambda: atomic_write_text(folder / "meta.json", json.dumps({
        "dataset": data.name, "split": split, "rows": len(dataset), "checkpoint": encoder.name,
        "sha256": encoder.sha256, "classes": list(dataset.classes),
        "split_source": getattr(dataset, "split_source", None)}, indent=1)))


class FeatureTask(TaskBase):
    """Base of the tasks that work on cached frozen features."""

    def __init__(self, ctx: TaskContext):
        super().__init__(ctx)
        self._scale: dict | None = None  # set by extraction_scale, printed once by log_scale
        self._scale_logged = False

    def features(self, encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig, split: str) -> FeatureSet:
        return read_entry(self.extract(encoder, data, run, split))

    def extract(self, encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig, split: str) -> Path:
        """The complete cache entry of ``split`` (:func:`read_entry` reads it), without reading it here."""
        return ensure_features(encoder, data, run, split, self.cache_dir, self.quiet, on_extract=self.log_scale)

    def split_features(self, encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig):
        """(train_x, train_y, test_x, test_y, class names) as numpy arrays."""
        train = self.features(encoder, data, run, "train")
        test = self.features(encoder, data, run, "test")
        return np.array(train.features), train.targets, np.array(test.features), test.targets, train.classes

    def extraction_scale(self, data: EvalDataConfig) -> dict:
        """``Result.scale`` of a feature task: the extraction batch per process and in total.

        :meth:`log_scale` prints it (main process, once) when the first extraction starts, the
        dataset found, or, with every split cached, when the task calls it; so a run that fails on a
        missing dataset still prints only its one error line.
        """
        n = dist.world_size()
        self._scale = {"world_size": n, "per_process_batch": data.batch_size, "effective_batch": n * data.batch_size}
        return self._scale

    def log_scale(self) -> None:
        if self._scale and not self._scale_logged and dist.is_main_process():
            self.ctx.logger.log(event="scale", task=self.name, **self._scale)
            self._scale_logged = True
