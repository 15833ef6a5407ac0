"""Weighted k-nearest-neighbour classification on frozen features (DINO ``eval_knn.py`` protocol).

Features are L2-normalised; each test image votes with its ``k`` most cosine-similar training
images, each vote weighted by ``exp(sim / T)``. DINO uses k=20, T=0.07; VISSL k=200, T=0.1.
With N processes each scores every N-th chunk of test images against all training features (every
process holds them) and the evaluator gathers the votes: the metrics of one process, exactly.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mec_eval import dist
from mec_eval.checkpoints import Encoder
from mec_eval.metrics.classification import ClassificationEvaluator
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import KNNConfig
from mec_eval.tasks.features import FeatureTask
from mec_eval.utils import UserError


def knn_votes(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, num_classes: int, k: int,
              temperature: float, chunks: list[range]):
    """Yield the class scores [len(chunk), C] of each chunk of rows of ``test``: the sum over the k
    nearest rows of ``train`` of exp(cos / T) per class. ``train`` and ``test`` are L2-normalised."""
    k = min(k, len(train))
    for rows in chunks:
        sims = test[rows.start:rows.stop] @ train.T
        top_sims, top_idx = sims.topk(k, dim=1)
        weights = (top_sims / temperature).exp()
        votes = torch.zeros(len(top_idx), num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        yield votes


def knn_scores(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, num_classes: int,
               k: int, temperature: float, chunk: int = 1024) -> torch.Tensor:
    """Class scores [N_test, C]: sum over the k nearest training rows of exp(cos / T) per class."""
    chunks = [range(start, min(start + chunk, len(test))) for start in range(0, len(test), chunk)]
    return torch.cat(list(knn_votes(F.normalize(train.float(), dim=1), train_labels, F.normalize(test.float(), dim=1),
                                    num_classes, k, temperature, chunks)))


class KNNTask(FeatureTask):
    name = "knn"
    Config = KNNConfig

    def run(self, encoder: Encoder, cfg: KNNConfig, workdir: Path) -> Result:
        if cfg.knn.k < 1 or cfg.knn.temperature <= 0:
            raise UserError("knn.k must be >= 1 and knn.temperature > 0")
        scale = self.extraction_scale(cfg.data)
        train_x, train_y, test_x, test_y, classes = self.split_features(encoder, cfg.data, cfg.run)
        self.log_scale()  # unless an extraction already did
        train = F.normalize(torch.from_numpy(train_x).float(), dim=1)
        test = F.normalize(torch.from_numpy(test_x).float(), dim=1)
        labels = torch.from_numpy(test_y)
        # Each process scores every N-th chunk of test rows against the whole training set: the same
        # chunks one process scores, so the same bits; the evaluator gathers them (every row once).
        chunks = dist.shard_batches(len(test), cfg.knn.chunk)
        evaluator = ClassificationEvaluator()

        def score() -> None:
            for rows, votes in zip(chunks, knn_votes(train, torch.from_numpy(train_y), test, len(classes), cfg.knn.k,
                                                     cfg.knn.temperature, chunks)):
                evaluator.process(votes, labels[rows.start:rows.stop])

        dist.run_together(score)  # a failure while scoring reaches every process before the gather below
        return Result(dataset=cfg.data.name, metrics=evaluator.evaluate(), primary="top1",
                      extra={"n_train": len(train_y), "n_test": len(test_y)}, scale=scale)
