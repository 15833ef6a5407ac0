"""DAVIS-2017 semi-supervised VOS scores: region similarity J, boundary F-measure F, J&F.

As the official davis2017-evaluation (Pont-Tuset et al., ``davis2017/metrics.py``, ``evaluation.py``):
J is the IoU of a binary mask with the ground truth (1 when both are empty; void pixels ignored); F
matches boundary maps within a tolerance of ``ceil(0.008 x image diagonal)`` pixels (a disk dilation)
and takes the harmonic mean of boundary precision and recall. Objects are ids 1..max id of the first
annotated frame; the first and last frames are left out; J-mean / F-mean average the per-object means
over all objects of all sequences, and J&F is their mean.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from mec_eval.data.davis import VOID, read_label_png
from mec_eval.utils import UserError

BOUNDARY_TOLERANCE = 0.008


def region_similarity(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """J: |pred & gt| / |pred | gt| over non-void pixels; 1 when both are empty."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Pixels whose right, lower or lower-right neighbour differs (davis2017-evaluation ``_seg2bmap``)."""
    mask = mask.astype(bool)
    east, south, south_east = np.zeros_like(mask), np.zeros_like(mask), np.zeros_like(mask)
    east[:, :-1], south[:-1, :], south_east[:-1, :-1] = mask[:, 1:], mask[1:, :], mask[1:, 1:]
    boundary = (mask ^ east) | (mask ^ south) | (mask ^ south_east)
    boundary[-1, :] = mask[-1, :] ^ east[-1, :]
    boundary[:, -1] = mask[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def disk(radius: int) -> np.ndarray:
    """Boolean disk footprint x^2 + y^2 <= r^2 (skimage.morphology.disk)."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def boundary_measure(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """F: boundary precision/recall within ceil(0.008 x diagonal) pixels, harmonic mean."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    radius = math.ceil(BOUNDARY_TOLERANCE * math.hypot(*pred.shape))
    pred_b, gt_b = boundary_map(pred), boundary_map(gt)
    footprint = disk(radius)
    pred_dil, gt_dil = ndimage.binary_dilation(pred_b, footprint), ndimage.binary_dilation(gt_b, footprint)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0  # precision 1 / recall 0 or the reverse: F = 0
    precision = float((pred_b & gt_dil).sum()) / n_pred
    recall = float((gt_b & pred_dil).sum()) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def sequence_scores(gt: list[np.ndarray], pred: list[np.ndarray]) -> dict:
    """Per-object mean J and F of one sequence (id maps per frame; first and last frames left out)."""
    if len(gt) != len(pred):
        raise UserError(f"{len(pred)} predicted frames for {len(gt)} annotated frames")
    n_objects = int(gt[0][gt[0] != VOID].max(initial=0))
    frames = range(1, len(gt) - 1) if len(gt) > 2 else range(len(gt))
    j_obj, f_obj = [], []
    for obj in range(1, n_objects + 1):
        js, fs = [], []
        for t in frames:
            if pred[t].shape != gt[t].shape:
                raise UserError(f"frame {t}: prediction {pred[t].shape} and annotation {gt[t].shape} sizes differ")
            void = gt[t] == VOID
            js.append(region_similarity(pred[t] == obj, gt[t] == obj, void))
            fs.append(boundary_measure(pred[t] == obj, gt[t] == obj, void))
        j_obj.append(float(np.mean(js)))
        f_obj.append(float(np.mean(fs)))
    return {"j_per_object": j_obj, "f_per_object": f_obj}


def summarise(per_sequence: dict[str, dict]) -> dict:
    """J-mean, F-mean (%, over all objects of all sequences) and J&F; per-sequence means kept."""
    js = [j for s in per_sequence.values() for j in s["j_per_object"]]
    fs = [f for s in per_sequence.values() for f in s["f_per_object"]]
    if not js:
        raise UserError("no objects in the first annotated frames: nothing to score")
    j_mean, f_mean = 100.0 * float(np.mean(js)), 100.0 * float(np.mean(fs))
    return {"j_mean": j_mean, "f_mean": f_mean, "jf_mean": (j_mean + f_mean) / 2,
            "per_sequence": {name: {"j": _percent(s["j_per_object"]), "f": _percent(s["f_per_object"])}
                             for name, s in per_sequence.items()}}


def _percent(values: list[float]) -> float | None:
    return 100.0 * float(np.mean(values)) if values else None  # None: a sequence without objects


def evaluate_vos(gt_folder: str | Path, results_folder: str | Path, sequences: list[str] | None = None) -> dict:
    """Score ``results_folder/<seq>/<frame>.png`` against ``gt_folder/<seq>/<frame>.png`` (DAVIS PNGs).

    ``gt_folder`` is ``<DAVIS>/Annotations/480p``; every annotated frame needs a result of the same name.
    """
    gt_folder, results_folder = Path(gt_folder), Path(results_folder)
    for folder, what in ((gt_folder, "annotation"), (results_folder, "results")):
        if not folder.is_dir():
            raise UserError(f"{what} folder {folder} does not exist (expected <folder>/<sequence>/00000.png)")
    names = sequences or sorted(p.name for p in gt_folder.iterdir() if p.is_dir())
    per_sequence = {}
    for name in names:
        gt_files = sorted((gt_folder / name).glob("*.png"))
        if not gt_files:
            raise UserError(f"no annotations in {gt_folder / name}")
        missing = [p.name for p in gt_files if not (results_folder / name / p.name).is_file()]
        if missing:
            raise UserError(f"results for {name} lack {len(missing)} frame(s) (first: {missing[0]}) in "
                            f"{results_folder / name}")
        per_sequence[name] = sequence_scores([read_label_png(p) for p in gt_files],
                                             [read_label_png(results_folder / name / p.name) for p in gt_files])
    return summarise(per_sequence)
