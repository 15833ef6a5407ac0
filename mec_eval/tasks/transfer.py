"""Fine-grained transfer, linear protocol of the ssl-transfer study (MEC Table 8, linusericsson/ssl-transfer).

Frozen features of bicubic Resize(224) + CenterCrop(224) images (no augmentation, no feature
normalisation) feed scikit-learn's L-BFGS multinomial logistic regression. ``C = 1/wd`` is chosen
over ``wd = logspace(-6, 5, 45)`` on the validation split (the official one for Aircraft, DTD,
Flowers-102 and VOC2007; otherwise ssl-transfer's 20 % hold-out of train, seed 0); the model is
then refitted on train+val and scored once on test with the dataset's metric. VOC2007 is
multi-label: one binary model per class (only label 1 positive), ranked by decision values.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from mec_eval.checkpoints import Encoder
from mec_eval.config import EvalDataConfig, EvalRunConfig
from mec_eval.data import TRANSFER_DATASETS, dataset_spec
from mec_eval.data.subsets import holdout_split
from mec_eval.metrics.classification import evaluator_for
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import TransferLinearConfig
from mec_eval.tasks.features import FeatureTask, eval_image_size
from mec_eval.utils import UserError

VAL_FRACTION, VAL_SEED = 0.2, 0  # ssl-transfer get_train_valid_loader(valid_size=0.2, random_seed=0)


def transfer_data(data: EvalDataConfig) -> EvalDataConfig:
    """``data`` with the ssl-transfer input pipeline: 224 px for the 11 sets (native size for the
    embedded ones unless set), Resize(size) + CenterCrop(size), bicubic."""
    size = data.image_size or (224 if data.name in TRANSFER_DATASETS else eval_image_size(data))
    return dataclasses.replace(data, image_size=size, resize_ratio=data.resize_ratio or 1.0, interpolation="bicubic")


@dataclass
class Splits:
    """Arrays of the selection (train -> val) and final (trainval -> test) fits."""
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    trainval: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    classes: list[str]
    val_source: str
    split_source: str | None = None


def dataset_metric(name: str) -> str:
    """The metric ssl-transfer reports for ``name`` (top1 for sets outside the 11)."""
    return dataset_spec(name).metric


def fit_scores(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, c: float, num_classes: int,
               multilabel: bool, max_iter: int) -> np.ndarray:
    """Decision values [N_eval, num_classes] of logistic regression(s) fitted with inverse strength ``c``."""
    with warnings.catch_warnings():
        # As linear.py (ignore_warnings): a fit that stops at max_iter is still scored.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _fit_scores(x_fit, y_fit, x_eval, c, num_classes, multilabel, max_iter)


def _fit_scores(x_fit, y_fit, x_eval, c, num_classes, multilabel, max_iter) -> np.ndarray:
    scores = np.full((len(x_eval), num_classes), -1e9)
    if multilabel:
        for k in range(num_classes):
            positive = y_fit[:, k] == 1
            if positive.all() or not positive.any():  # one label only: a constant ranking
                scores[:, k] = 1.0 if positive.all() else -1.0
                continue
            scores[:, k] = LogisticRegression(C=c, max_iter=max_iter).fit(x_fit, positive).decision_function(x_eval)
        return scores
    model = LogisticRegression(C=c, max_iter=max_iter).fit(x_fit, y_fit)
    values = model.decision_function(x_eval)
    scores[:, model.classes_] = np.stack([-values, values], 1) if values.ndim == 1 else values
    return scores


def score(metric: str, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    evaluator = evaluator_for(metric)
    evaluator.process(torch.from_numpy(scores), torch.from_numpy(targets))
    return evaluator.evaluate()


def expand_all_transfer_sets(cls, cfg) -> list[list[str]]:
    """``data.name=all``: one run per dataset of MEC Table 8, each read from ``data.root``."""
    if cfg.data.name != "all":
        return [[]]
    return [[f"data.name={name}"] for name in TRANSFER_DATASETS]


class TransferLinearTask(FeatureTask):
    name = "transfer-linear"
    Config = TransferLinearConfig
    expand = classmethod(expand_all_transfer_sets)  # data.name=all: the 11 datasets, one result.json each

    def splits(self, encoder: Encoder, data: EvalDataConfig, run: EvalRunConfig) -> Splits:
        """Features of the official splits, with the 20 % hold-out where there is no val split."""
        train = self.features(encoder, data, run, "train")
        test = self.features(encoder, data, run, "test")
        as_arrays = lambda fs: (np.array(fs.features), fs.targets)  # noqa: E731
        if "val" in dataset_spec(data.name).splits:
            val = self.features(encoder, data, run, "val")
            trainval = (np.concatenate([train.features, val.features]), np.concatenate([train.targets, val.targets]))
            return Splits(as_arrays(train), as_arrays(val), trainval, as_arrays(test), train.classes, "official val split",
                          train.split_source)
        tr, va = holdout_split(len(train.targets), VAL_FRACTION, VAL_SEED)
        x, y = as_arrays(train)
        return Splits((x[tr], y[tr]), (x[va], y[va]), (x, y), as_arrays(test), train.classes,
                      f"{VAL_FRACTION:.0%} of train held out (seed {VAL_SEED})", train.split_source)

    def run(self, encoder: Encoder, cfg: TransferLinearConfig, workdir: Path) -> Result:
        if cfg.data.name == "all":
            raise UserError("data.name=all is expanded by `mec-eval run`/`suite`; call run_task_all for it")
        data = transfer_data(cfg.data)
        spec = dataset_spec(data.name)
        metric = spec.metric
        s = self.splits(encoder, data, cfg.run)
        grid = cfg.transfer.grid()
        val_scores = Parallel(n_jobs=cfg.transfer.n_jobs)(
            delayed(fit_scores)(s.train[0], s.train[1], s.val[0], 1.0 / wd, len(s.classes), spec.multilabel,
                                cfg.transfer.max_iter) for wd in grid)
        val_metric = [score(metric, v, s.val[1])[metric] for v in val_scores]
        best = int(np.argmax(val_metric))  # first maximum in increasing wd order, as linear.py's strict ">"
        test_scores = fit_scores(s.trainval[0], s.trainval[1], s.test[0], 1.0 / grid[best], len(s.classes),
                                 spec.multilabel, cfg.transfer.max_iter)
        metrics = score(metric, test_scores, s.test[1])
        return Result(dataset=data.name, metrics=metrics, primary=metric,
                      extra={"selected_wd": grid[best], "selected_C": 1.0 / grid[best], "val_metric": val_metric[best],
                             "validation": s.val_source, "split_source": s.split_source,
                             "n_train": len(s.train[1]), "n_val": len(s.val[1]),
                             "n_test": len(s.test[1]), "image_size": data.image_size})
