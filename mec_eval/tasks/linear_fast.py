"""Fast linear probe: cached frozen features + multinomial logistic regression trained by L-BFGS in torch.

Features come from the memory-mapped cache (extracted once, centre crop, no augmentation), are
standardised with the training statistics (the role of the paper probe's affine-free BatchNorm),
and a softmax classifier minimising ``mean cross-entropy + wd/2 * ||W||^2`` is fitted full-batch
with L-BFGS on the run's device (GPU when present). ``wd`` is chosen on a stratified 20 % hold-out
of the training split, then the classifier is refitted on the whole split and scored once on test.
This objective equals scikit-learn's ``LogisticRegression(C=1/(wd*N))``, which the tests check.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from mec_eval.checkpoints import Encoder
from mec_eval.dist import resolve_device
from mec_eval.metrics.classification import ClassificationEvaluator
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import LinearFastConfig, LinearFastParams
from mec_eval.tasks.features import FeatureTask
from mec_eval.utils import UserError


@dataclass
class LinearModel:
    """Standardisation statistics and softmax weights; ``scores`` maps raw features to logits."""
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std) @ self.weight + self.bias


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, wd: float, max_iter: int) -> LinearModel:
    """Full-batch L-BFGS on standardised ``x`` [N, D] (float32, any device) and labels ``y`` [N]."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    weight = torch.zeros(x.shape[1], num_classes, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, y) + 0.5 * wd * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearModel(mean, std, weight.detach(), bias.detach())


def select_wd(x: torch.Tensor, y: torch.Tensor, num_classes: int, params: LinearFastParams,
              seed: int) -> tuple[float, dict[float, float]]:
    """The ``wd`` with the best hold-out top-1 (ties go to the stronger regularisation)."""
    labels = y.cpu().numpy()
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    tr, val = train_test_split(np.arange(len(labels)), test_size=params.val_fraction, random_state=seed,
                               stratify=stratify)
    tr, val = torch.as_tensor(tr, device=x.device), torch.as_tensor(val, device=x.device)
    scores = {}
    for wd in params.wd_grid:
        model = fit_logistic(x[tr], y[tr], num_classes, wd, params.max_iter)
        scores[wd] = float((model.scores(x[val]).argmax(1) == y[val]).float().mean() * 100)
    best = max(sorted(params.wd_grid, reverse=True), key=lambda wd: scores[wd])
    return best, scores


class LinearFastTask(FeatureTask):
    name = "linear-fast"
    Config = LinearFastConfig

    def run(self, encoder: Encoder, cfg: LinearFastConfig, workdir: Path) -> Result:
        params = cfg.linear
        if not params.wd_grid or min(params.wd_grid) < 0 or not 0 < params.val_fraction < 1:
            raise UserError("linear.wd_grid must be non-empty and >= 0, and 0 < linear.val_fraction < 1")
        train_x, train_y, test_x, test_y, classes = self.split_features(encoder, cfg.data, cfg.run)
        device = resolve_device(cfg.run.device)
        x = torch.as_tensor(train_x, device=device)
        y = torch.as_tensor(train_y, device=device)
        best_wd, val_scores = select_wd(x, y, len(classes), params, cfg.run.seed)
        model = fit_logistic(x, y, len(classes), best_wd, params.max_iter)
        evaluator = ClassificationEvaluator()
        evaluator.process(model.scores(torch.as_tensor(test_x, device=device)).cpu(), torch.from_numpy(test_y))
        train_top1 = float((model.scores(x).argmax(1) == y).float().mean() * 100)
        return Result(dataset=cfg.data.name, metrics=evaluator.evaluate(), primary="top1",
                      extra={"selected_wd": best_wd, "val_top1_by_wd": {str(w): s for w, s in val_scores.items()},
                             "train_top1": train_top1, "n_train": int(len(train_y)), "n_test": int(len(test_y))})
