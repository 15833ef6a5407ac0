"""The MEC linear probe (official ``benchmarks/linearprob/main_lincls.py``, SimSiam-derived).

The backbone is frozen in eval mode; the head is ``BatchNorm1d(D, affine=False, eps=1e-6)`` followed
by a linear layer initialised N(0, 0.01) with zero bias, trained with LARS (trust 0.001 on every
parameter) around SGD, batch 4096, lr = 0.03 * batch / 256, momentum 0.9, no weight decay, cosine
over 100 epochs, on RandomResizedCrop + flip; scored top-1/top-5 after the last epoch on the
resize 256 / centre-crop 224 test images. No checkpoint selection on the test set.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mec_eval.checkpoints import Encoder
from mec_eval.metrics.classification import ClassificationEvaluator
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import LinearConfig
from mec_eval.tasks.training import Classifier, TrainedTask, fit_then_predict, linear_head, supervised_sets


def probe_head(dim: int, num_classes: int) -> nn.Sequential:
    """Affine-free BatchNorm + linear layer, initialised as in main_lincls.py."""
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), linear_head(dim, num_classes))


class LinearTask(TrainedTask):
    name = "linear"
    Config = LinearConfig

    def run(self, encoder: Encoder, cfg: LinearConfig, workdir: Path) -> Result:
        train, test = supervised_sets(cfg.data)
        torch.manual_seed(cfg.run.seed)  # the head's initialisation depends on run.seed only
        head = probe_head(encoder.feature_dim, len(train.classes))
        model = Classifier(encoder.backbone, head, frozen=True, chunk=cfg.data.batch_size)
        # The head's one group takes the engine's scaled lr: base_lr * effective batch / 256 (main_lincls.py).
        engine, scores, targets = fit_then_predict(model, [{"params": list(head.parameters())}], train, test,
                                                   cfg.optim, cfg.data, cfg.run, workdir, self.ctx)
        evaluator = ClassificationEvaluator()
        evaluator.process(scores, targets)
        return Result(dataset=cfg.data.name, metrics=evaluator.evaluate(), primary="top1",
                      extra={"n_train": len(train), "n_test": len(test), "batch_size": engine.plan.effective_batch,
                             "iterations": engine.plan.total_iters, "lr": engine.lr}, scale=engine.scale)
