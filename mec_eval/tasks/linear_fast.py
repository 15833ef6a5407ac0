"""Fast linear probe: cached frozen features + multinomial logistic regression (scikit-learn).

Features are standardised (the role of the official probe's affine-free BatchNorm), the inverse
regularisation C is chosen on a stratified hold-out of the training split, then the classifier is
refitted on the whole training split and scored once on the test split (no test-set selection).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from mec_eval.checkpoints import Encoder
from mec_eval.config import EvalDataConfig, EvalRunConfig
from mec_eval.metrics.classification import ClassificationEvaluator, topk_accuracy
from mec_eval.tasks.base import Result
from mec_eval.tasks.features import FeatureTask
from mec_eval.utils import UserError


@dataclass
class LinearFastParams:
    c_grid: list = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0])
    val_fraction: float = 0.2
    max_iter: int = 1000
    n_jobs: int = -1


@dataclass
class LinearFastConfig:
    protocol: str = "fast"
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    linear: LinearFastParams = field(default_factory=LinearFastParams)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


def _fit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int, seed: int) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit(x, y)


def select_c(x: np.ndarray, y: np.ndarray, params: LinearFastParams, seed: int) -> tuple[float, dict[float, float]]:
    """C with the best hold-out top-1 (ties go to the stronger regularisation)."""
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=params.val_fraction, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_val = scaler.transform(x_tr), scaler.transform(x_val)
    models = Parallel(n_jobs=params.n_jobs)(delayed(_fit)(x_tr, y_tr, c, params.max_iter, seed) for c in params.c_grid)
    scores = {c: float((m.predict(x_val) == y_val).mean() * 100) for c, m in zip(params.c_grid, models)}
    best = max(sorted(params.c_grid), key=lambda c: scores[c])
    return best, scores


def class_scores(model: LogisticRegression, x: np.ndarray) -> np.ndarray:
    """Decision values [N, len(model.classes_)], also for the binary case (sklearn returns [N])."""
    scores = model.decision_function(x)
    return np.stack([-scores, scores], axis=1) if scores.ndim == 1 else scores


class LinearFastTask(FeatureTask):
    name = "linear-fast"
    Config = LinearFastConfig

    def run(self, encoder: Encoder, cfg: LinearFastConfig, workdir: Path) -> Result:
        if not cfg.linear.c_grid or not 0 < cfg.linear.val_fraction < 1:
            raise UserError("linear.c_grid must be non-empty and 0 < linear.val_fraction < 1")
        train_x, train_y, test_x, test_y, classes = self.split_features(encoder, cfg.data, cfg.run)
        best_c, val_scores = select_c(train_x, train_y, cfg.linear, cfg.run.seed)
        scaler = StandardScaler().fit(train_x)
        model = _fit(scaler.transform(train_x), train_y, best_c, cfg.linear.max_iter, cfg.run.seed)
        # Scores over every class index (a class absent from train gets -inf, never predicted).
        scores = np.full((len(test_x), len(classes)), -np.inf, dtype=np.float64)
        scores[:, model.classes_] = class_scores(model, scaler.transform(test_x))
        evaluator = ClassificationEvaluator()
        evaluator.process(torch.from_numpy(scores), torch.from_numpy(test_y))
        metrics = evaluator.evaluate()
        train_top1 = topk_accuracy(torch.from_numpy(class_scores(model, scaler.transform(train_x))),
                                   torch.from_numpy(np.searchsorted(model.classes_, train_y)), 1)
        return Result(dataset=cfg.data.name, metrics=metrics, primary="top1",
                      extra={"selected_C": best_c, "val_top1_by_C": {str(c): s for c, s in val_scores.items()},
                             "train_top1": train_top1, "n_train": int(len(train_y)), "n_test": int(len(test_y))})
