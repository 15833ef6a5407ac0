"""Weighted k-nearest-neighbour classification on frozen features (DINO ``eval_knn.py`` protocol).

Features are L2-normalised; each test image votes with its ``k`` most cosine-similar training
images, each vote weighted by ``exp(sim / T)``. DINO uses k=20, T=0.07; VISSL k=200, T=0.1.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mec_eval.checkpoints import Encoder
from mec_eval.metrics.classification import ClassificationEvaluator
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import KNNConfig
from mec_eval.tasks.features import FeatureTask
from mec_eval.utils import UserError


def knn_scores(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, num_classes: int,
               k: int, temperature: float, chunk: int = 1024) -> torch.Tensor:
    """Class scores [N_test, C]: sum over the k nearest training rows of exp(cos / T) per class."""
    train = F.normalize(train.float(), dim=1)
    test = F.normalize(test.float(), dim=1)
    k = min(k, len(train))
    out = []
    for start in range(0, len(test), chunk):
        sims = test[start:start + chunk] @ train.T
        top_sims, top_idx = sims.topk(k, dim=1)
        weights = (top_sims / temperature).exp()
        votes = torch.zeros(len(top_idx), num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        out.append(votes)
    return torch.cat(out)


class KNNTask(FeatureTask):
    name = "knn"
    Config = KNNConfig

    def run(self, encoder: Encoder, cfg: KNNConfig, workdir: Path) -> Result:
        if cfg.knn.k < 1 or cfg.knn.temperature <= 0:
            raise UserError("knn.k must be >= 1 and knn.temperature > 0")
        train_x, train_y, test_x, test_y, classes = self.split_features(encoder, cfg.data, cfg.run)
        scores = knn_scores(torch.from_numpy(train_x), torch.from_numpy(train_y), torch.from_numpy(test_x),
                            len(classes), cfg.knn.k, cfg.knn.temperature, cfg.knn.chunk)
        evaluator = ClassificationEvaluator()
        evaluator.process(scores, torch.from_numpy(test_y))
        return Result(dataset=cfg.data.name, metrics=evaluator.evaluate(), primary="top1",
                      extra={"n_train": int(len(train_y)), "n_test": int(len(test_y))})
