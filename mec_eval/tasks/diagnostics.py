"""Representation diagnostics of a checkpoint on a held-out split (matrix information, coding rates, geometry).

Single-view quantities (coding length, matrix entropies, effective rank, total coding rate, U-MAE
and Wang-Isola uniformity) are computed on the cached frozen features of a seeded subset of
``diag.n`` test images (the same cache kNN and linear-fast read: deterministic resize + centre crop,
backbone global-pooled output). Two-view quantities (alignment, matrix mutual information, joint
entropy) need two augmentations of the same images: the first ``diag.n_views`` images of that subset
through the pre-training recipe's views (:mod:`mec_eval.pretrain.augment`; tasks and pretrain are one
layer), each item seeded by (seed, index). Every quantity is reported uncentred and ``_centred``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mec_eval.checkpoints import Encoder
from mec_eval.data import build_dataset
from mec_eval.diagnostics import single_view_diagnostics, two_view_diagnostics
from mec_eval.dist import autocast, resolve_device, resolve_precision
from mec_eval.log import progress
from mec_eval.pretrain.augment import build_two_view_transform
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import DiagnosticsConfig
from mec_eval.tasks.features import FeatureTask, eval_image_size
from mec_eval.training.sampling import SeededItems, derive_seed

LOWER_IS_TIGHTER = ("alignment", "uniformity", "umae_uniformity")
SUFFIXES = {False: "", True: "_centred"}


def held_out_subset(total: int, n: int, seed: int) -> np.ndarray:
    """The first ``min(n, total)`` indices of a seeded permutation of the split (sorted, for sequential reads)."""
    order = torch.randperm(total, generator=torch.Generator().manual_seed(derive_seed(seed, "diagnostics", 0)))
    return np.sort(order[:min(n, total)].numpy())


@torch.no_grad()
def two_view_features(encoder: Encoder, cfg: DiagnosticsConfig, indices: np.ndarray, quiet: bool):
    """Backbone features ``[len(indices), d]`` of the two pre-training views of each image (float32, CPU)."""
    size = eval_image_size(cfg.data)
    views = build_two_view_transform(cfg.diag.augment, size, cfg.diag.crop_min_scale)
    dataset = build_dataset(cfg.data.name, cfg.data.root, "test", transform=views)
    device = resolve_device(cfg.run.device)
    amp_dtype = resolve_precision(cfg.run.precision, device)
    keys = [(0, int(i)) for i in indices]  # SeededItems keys: every view drawn under seed (run.seed, 0, index)
    batches = [keys[s:s + cfg.data.batch_size] for s in range(0, len(keys), cfg.data.batch_size)]
    loader = DataLoader(SeededItems(dataset, cfg.run.seed), batch_sampler=batches, num_workers=cfg.data.num_workers)
    model = encoder.backbone.to(device).eval()
    out: list[list[torch.Tensor]] = [[], []]
    for (first, second), _ in progress(loader, total=len(batches), desc=f"{cfg.data.name}/two views", quiet=quiet):
        for sink, images in zip(out, (first, second)):
            with autocast(device, amp_dtype):
                sink.append(model(images.to(device).contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(out[0]), torch.cat(out[1])


class DiagnosticsTask(FeatureTask):
    name = "diagnostics"
    Config = DiagnosticsConfig

    def run(self, encoder: Encoder, cfg: DiagnosticsConfig, workdir: Path) -> Result:
        scale = self.extraction_scale(cfg.data)
        test = self.features(encoder, cfg.data, cfg.run, "test")
        self.log_scale()  # unless the extraction already did
        indices = held_out_subset(len(test.features), cfg.diag.n, cfg.run.seed)
        single = torch.from_numpy(np.asarray(test.features[indices]))
        v1, v2 = two_view_features(encoder, cfg, indices[:cfg.diag.n_views], self.quiet)
        metrics: dict[str, float] = {}
        for centred, suffix in SUFFIXES.items():
            values = {**single_view_diagnostics(single, cfg.diag.eps_d2, cfg.diag.mu, centred),
                      **two_view_diagnostics(v1, v2, cfg.diag.alpha, centred)}
            metrics.update({f"{name}{suffix}": value for name, value in values.items()})
        lower = [f"{name}{suffix}" for suffix in SUFFIXES.values() for name in LOWER_IS_TIGHTER]
        extra = {
            "split": "test", "n": len(indices), "n_views": len(v1), "d": int(single.shape[1]),
            "image_size": eval_image_size(cfg.data), "features_from": "backbone global-pooled output",
            "single_view_input": "deterministic resize + centre crop (the feature cache of knn / linear-fast)",
            "two_view_input": f"pre-training views '{cfg.diag.augment}', crop scale >= {cfg.diag.crop_min_scale}",
            "eps_d2": cfg.diag.eps_d2, "mu": cfg.diag.mu, "mi_alpha": cfg.diag.alpha,
            "entropy_normaliser": "log d", "alignment_alpha": 2.0, "uniformity_t": 2.0,
            "centring": "'_centred' metrics subtract the feature mean (per view) before L2 normalisation",
            "units": "nats",
        }
        return Result(dataset=cfg.data.name, metrics=metrics, primary="coding_length",
                      lower_is_better_metrics=lower, extra=extra, scale=scale)
