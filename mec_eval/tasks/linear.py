"""The MEC linear probe (official ``benchmarks/linearprob/main_lincls.py``, SimSiam-derived).

The backbone is frozen in eval mode; the head is ``BatchNorm1d(D, affine=False, eps=1e-6)`` followed
by a linear layer initialised N(0, 0.01) with zero bias, trained with LARS (trust 0.001 on every
parameter) around SGD, batch 4096, lr = 0.03 * batch / 256, momentum 0.9, no weight decay, cosine
over 100 epochs, on RandomResizedCrop + flip; scored top-1/top-5 after the last epoch on the
resize 256 / centre-crop 224 test images. No checkpoint selection on the test set.

With ``grid.base_lrs`` (or a second head kind) the probe searches its learning rate in one pass
(:mod:`mec_eval.tasks.linear_grid`): all heads train together on the frozen features of each batch,
are compared on a held-out part of the training split, and the selected one is scored on test.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mec_eval.checkpoints import Encoder
from mec_eval.data import build_dataset
from mec_eval.dist import is_main_process
from mec_eval.metrics.classification import ClassificationEvaluator
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import LinearConfig
from mec_eval.tasks.features import test_transform
from mec_eval.tasks.linear_grid import HeadGrid, grid_points, select_head, split_for_selection
from mec_eval.tasks.training import (
    Classifier,
    TrainedTask,
    classifier_engine,
    fit_then_predict,
    linear_head,
    predict,
    supervised_sets,
)
from mec_eval.training.distributed import evaluation_share
from mec_eval.training.engine import make_plan


def probe_head(dim: int, num_classes: int) -> nn.Sequential:
    """Affine-free BatchNorm + linear layer, initialised as in main_lincls.py."""
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), linear_head(dim, num_classes))


def _top1(scores: torch.Tensor, targets: torch.Tensor) -> dict:
    evaluator = ClassificationEvaluator()
    evaluator.process(scores, targets)
    return evaluator.evaluate()


class LinearTask(TrainedTask):
    name = "linear"
    Config = LinearConfig

    def run(self, encoder: Encoder, cfg: LinearConfig, workdir: Path) -> Result:
        train, test = supervised_sets(cfg.data)
        if cfg.grid.base_lrs or cfg.grid.heads != ["bn"]:
            return self._run_grid(encoder, cfg, train, test, workdir)
        torch.manual_seed(cfg.run.seed)  # the head's initialisation depends on run.seed only
        head = probe_head(encoder.feature_dim, len(train.classes))
        model = Classifier(encoder.backbone, head, frozen=True, chunk=cfg.data.batch_size)
        # The head's one group takes the engine's scaled lr: base_lr * effective batch / 256 (main_lincls.py).
        engine, scores, targets = fit_then_predict(model, [{"params": list(head.parameters())}], train, test,
                                                   cfg.optim, cfg.data, cfg.run, workdir, self.ctx)
        return Result(dataset=cfg.data.name, metrics=_top1(scores, targets), primary="top1",
                      extra={"n_train": len(train), "n_test": len(test), "batch_size": engine.plan.effective_batch,
                             "iterations": engine.plan.total_iters, "lr": engine.lr}, scale=engine.scale)

    def _run_grid(self, encoder: Encoder, cfg: LinearConfig, train, test, workdir: Path) -> Result:
        """Train every head of the grid in one pass, select on held-out training images, score on test."""
        points = grid_points(cfg.grid, cfg.optim.base_lr)
        train_eval = build_dataset(cfg.data.name, cfg.data.root, "train", test_transform(cfg.data))
        fit_set, held = split_for_selection(train, train_eval, cfg.grid.val_fraction, cfg.run.seed)
        grid = HeadGrid(points, encoder.feature_dim, len(train.classes), cfg.run.seed)
        model = Classifier(encoder.backbone, grid, frozen=True, chunk=cfg.data.batch_size)
        plan = make_plan(len(fit_set), cfg.optim.batch_size, cfg.optim.epochs, cfg.optim.steps)
        groups = grid.param_groups(plan.effective_batch, cfg.optim.lr_scaling)
        engine = classifier_engine(model, groups, fit_set, cfg.optim, cfg.data, cfg.run, workdir, self.ctx.quiet,
                                   non_finite_hint="a head diverged: drop the largest grid.base_lrs, or use "
                                                   "run.precision=fp32")
        if is_main_process():
            self.ctx.logger.info(f"{len(points)} heads in one pass ({', '.join(p.label for p in points)}); "
                                 f"{engine.scale_line()} x each head's base lr / optim.base_lr")
        engine.fit()
        device, amp = engine.options.device, engine.options.amp_dtype
        val_scores, val_targets = predict(model, evaluation_share(held), cfg.data.batch_size, device, amp,
                                          cfg.data.num_workers, self.ctx.quiet)
        val_top1 = [_top1(val_scores[:, i], val_targets)["top1"] for i in range(len(points))]
        best = select_head(val_top1)
        test_scores, test_targets = predict(model, evaluation_share(test), cfg.data.batch_size, device, amp,
                                            cfg.data.num_workers, self.ctx.quiet)
        chosen = points[best]
        lrs = [group["lr"] for group in groups]
        table = [{"head": p.kind, "base_lr": p.base_lr, "lr": lr, "val_top1": top1}
                 for p, lr, top1 in zip(points, lrs, val_top1)]
        scale = {**engine.scale, "base_lr": chosen.base_lr, "lr": lrs[best]}
        return Result(dataset=cfg.data.name, metrics=_top1(test_scores[:, best], test_targets), primary="top1",
                      extra={"n_train": len(fit_set), "n_val": len(held), "n_test": len(test),
                             "selected": {"head": chosen.kind, "base_lr": chosen.base_lr, "lr": lrs[best]},
                             "grid": table, "selected_on": f"{cfg.grid.val_fraction:g} of the training split held out",
                             "batch_size": engine.plan.effective_batch, "iterations": engine.plan.total_iters},
                      scale=scale)
