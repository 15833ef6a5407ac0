"""Fast linear probe: cached frozen features + multinomial logistic regression trained by L-BFGS in torch.

Features come from the memory-mapped cache (extracted once, centre crop, no augmentation), are
standardised with the training statistics (the role of the paper probe's affine-free BatchNorm),
and a softmax classifier minimising ``mean cross-entropy + wd/2 * ||W||^2`` is fitted full-batch
with L-BFGS on the run's device (GPU when present). ``wd`` is chosen on a stratified 20 % hold-out
of the training split, then the classifier is refitted on the whole split and scored once on test.
This objective equals scikit-learn's ``LogisticRegression(C=1/(wd*N))``, which the tests check.
With several processes the main process alone selects and fits (the result of one process, exactly)
and every process scores its share of the test rows for the gathered evaluator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from mec_eval import dist
from mec_eval.checkpoints import Encoder
from mec_eval.dist import resolve_device
from mec_eval.metrics.classification import ClassificationEvaluator
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import LinearFastConfig, LinearFastParams
from mec_eval.tasks.features import FeatureTask, read_entry
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


SCORE_ROWS = 4096  # test rows per scoring block (each process scores every N-th block)


def fit_probe(train_dir: Path, params: LinearFastParams, seed: int, device: torch.device) -> tuple[LinearModel, dict]:
    """Select ``wd`` on the hold-out, refit on the whole training split; (model on the CPU, extra fields)."""
    train = read_entry(train_dir)
    x = torch.as_tensor(np.array(train.features), device=device)
    y = torch.as_tensor(train.targets, device=device)
    best_wd, val_scores = select_wd(x, y, len(train.classes), params, seed)
    model = fit_logistic(x, y, len(train.classes), best_wd, params.max_iter)
    train_top1 = float((model.scores(x).argmax(1) == y).float().mean() * 100)
    on_cpu = LinearModel(*(t.cpu() for t in (model.mean, model.std, model.weight, model.bias)))
    return on_cpu, {"selected_wd": best_wd, "val_top1_by_wd": {str(w): s for w, s in val_scores.items()},
                    "train_top1": train_top1, "n_train": len(train.targets)}


class LinearFastTask(FeatureTask):
    name = "linear-fast"
    Config = LinearFastConfig

    def run(self, encoder: Encoder, cfg: LinearFastConfig, workdir: Path) -> Result:
        params = cfg.linear
        if not params.wd_grid or min(params.wd_grid) < 0 or not 0 < params.val_fraction < 1:
            raise UserError("linear.wd_grid must be non-empty and >= 0, and 0 < linear.val_fraction < 1")
        scale = self.extraction_scale(cfg.data)
        train_dir, test_dir = (self.extract(encoder, cfg.data, cfg.run, split) for split in ("train", "test"))
        self.log_scale()  # unless an extraction already did
        device = resolve_device(cfg.run.device)
        # The main process alone fits (one copy of the training features in memory); the model is small
        # and goes to every process, which scores every N-th block of test rows for the gathered evaluator.
        model, extra = dist.share_from_main(lambda: fit_probe(train_dir, params, cfg.run.seed, device))
        evaluator = ClassificationEvaluator()

        def score() -> int:
            probe = LinearModel(*(t.to(device) for t in (model.mean, model.std, model.weight, model.bias)))
            test = read_entry(test_dir)
            x = torch.as_tensor(np.array(test.features), device=device)
            for rows in dist.shard_batches(len(test.targets), SCORE_ROWS):
                evaluator.process(probe.scores(x[rows.start:rows.stop]).cpu(),
                                  torch.from_numpy(test.targets[rows.start:rows.stop]))
            return len(test.targets)

        n_test = dist.run_together(score)  # a failure while scoring reaches every process before the gather below
        return Result(dataset=cfg.data.name, metrics=evaluator.evaluate(), primary="top1",
                      extra={**extra, "n_test": n_test}, scale=scale)
